#ifndef CGLIBCSHIMS_H
#define CGLIBCSHIMS_H
/* glibc functions Swift's Glibc module hides behind _GNU_SOURCE, and macros Swift cannot import.
   Each wrapper returns what the wrapped call returns. */
#include <spawn.h>

/* Declared, not included: <sys/socket.h> here would make Swift take the socket types from this
   module instead of Glibc. */
struct sockaddr;

/* pipe2(fds, O_CLOEXEC): both ends close-on-exec from the start, with no window for a leak. */
int cgs_pipe_cloexec(int fds[2]);

/* accept4(fd, address, length, SOCK_NONBLOCK | SOCK_CLOEXEC): a connection that is
   non-blocking and close-on-exec from the start. */
int cgs_accept_nonblocking(int fd, struct sockaddr *address, unsigned int *length);

/* posix_spawn_file_actions_addclosefrom_np: the child closes every descriptor >= from, so
   nothing the exporter inherited (from systemd, a shell, a test runner) reaches barman. */
int cgs_spawn_file_actions_addclosefrom(posix_spawn_file_actions_t *actions, int from);

/* malloc_trim(0): give freed heap memory back to the kernel after a refresh decoded large
   barman output, so resident memory reflects what is kept, not what was once parsed. */
int cgs_release_free_memory(void);

/* mallopt(M_ARENA_MAX, n): bound the per-thread malloc arenas, each of which keeps its own
   free memory. */
int cgs_limit_malloc_arenas(int count);

/* mallopt(M_MMAP_THRESHOLD, bytes): allocations at least this large get their own mapping. */
int cgs_set_mmap_threshold(int bytes);

/* setpriority(PRIO_PROCESS, 0, nice): on Linux nice values are per thread, so this lowers the
   calling thread's priority only (raising the nice value needs no privilege). */
int cgs_set_thread_nice(int nice);

/* pthread_setname_np(pthread_self(), name): the calling thread's name, at most 15 bytes. */
int cgs_set_thread_name(const char *name);

/* CPU_COUNT of sched_getaffinity: the processors this process may run on (a cpuset, systemd's
   CPUAffinity=, taskset), not every processor of the host; -1 with errno on failure. */
int cgs_available_processors(void);

/* WIFEXITED / WEXITSTATUS / WIFSIGNALED / WTERMSIG */
int cgs_wifexited(int status);
int cgs_wexitstatus(int status);
int cgs_wifsignaled(int status);
int cgs_wtermsig(int status);
#endif
