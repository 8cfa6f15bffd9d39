#ifndef CPROCESSSHIMS_H
#define CPROCESSSHIMS_H
/* glibc functions Swift's Glibc module hides behind _GNU_SOURCE, and macros Swift cannot import.
   Each wrapper returns what the wrapped call returns. */
#include <spawn.h>

/* pipe2(fds, O_CLOEXEC): both ends close-on-exec from the start, with no window for a leak. */
int cps_pipe_cloexec(int fds[2]);

/* posix_spawn_file_actions_addclosefrom_np: the child closes every descriptor >= from, so
   nothing the exporter inherited (from systemd, a shell, a test runner) reaches barman. */
int cps_spawn_file_actions_addclosefrom(posix_spawn_file_actions_t *actions, int from);

/* WIFEXITED / WEXITSTATUS / WIFSIGNALED / WTERMSIG */
int cps_wifexited(int status);
int cps_wexitstatus(int status);
int cps_wifsignaled(int status);
int cps_wtermsig(int status);
#endif
