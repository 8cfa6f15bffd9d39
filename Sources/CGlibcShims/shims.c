#define _GNU_SOURCE
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include "CGlibcShims.h"

int cgs_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int cgs_accept_nonblocking(int fd, struct sockaddr *address, unsigned int *length) {
    return accept4(fd, address, length, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

int cgs_spawn_file_actions_addclosefrom(posix_spawn_file_actions_t *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np(actions, from);
}

int cgs_wifexited(int status) { return WIFEXITED(status); }
int cgs_wexitstatus(int status) { return WEXITSTATUS(status); }
int cgs_wifsignaled(int status) { return WIFSIGNALED(status); }
int cgs_wtermsig(int status) { return WTERMSIG(status); }

int cgs_release_free_memory(void) { return malloc_trim(0); }
int cgs_limit_malloc_arenas(int count) { return mallopt(M_ARENA_MAX, count); }
int cgs_set_mmap_threshold(int bytes) { return mallopt(M_MMAP_THRESHOLD, bytes); }

int cgs_set_thread_nice(int nice) {
    return setpriority(PRIO_PROCESS, 0, nice);
}

int cgs_set_thread_name(const char *name) { return pthread_setname_np(pthread_self(), name); }

int cgs_available_processors(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return -1;
    return CPU_COUNT(&set);
}
