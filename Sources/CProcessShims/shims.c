#define _GNU_SOURCE
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include "CProcessShims.h"

int cps_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int cps_spawn_file_actions_addclosefrom(posix_spawn_file_actions_t *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np(actions, from);
}

int cps_wifexited(int status) { return WIFEXITED(status); }
int cps_wexitstatus(int status) { return WEXITSTATUS(status); }
int cps_wifsignaled(int status) { return WIFSIGNALED(status); }
int cps_wtermsig(int status) { return WTERMSIG(status); }
