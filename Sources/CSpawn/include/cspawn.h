#ifndef MODELD_CSPAWN_H
#define MODELD_CSPAWN_H

#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/// The step of the child's set-up that failed, reported through the exec-status pipe.
enum cspawn_stage {
    CSPAWN_STAGE_NONE = 0,
    CSPAWN_STAGE_PIPE = 1,
    CSPAWN_STAGE_FORK = 2,
    CSPAWN_STAGE_PDEATHSIG = 3,
    CSPAWN_STAGE_PARENT_GONE = 4,
    CSPAWN_STAGE_SETSID = 5,
    CSPAWN_STAGE_SIGNALS = 6,
    CSPAWN_STAGE_DEVNULL = 7,
    CSPAWN_STAGE_DUP2 = 8,
    CSPAWN_STAGE_CLOSE_FDS = 9,
    CSPAWN_STAGE_CHDIR = 10,
    CSPAWN_STAGE_EXEC = 11,
};

/// The outcome of ``cspawn_spawn``.
struct cspawn_result {
    /// The child's pid (also its session and process-group id), or -1.
    pid_t pid;
    /// 0 on success, else the errno of the failed step.
    int error;
    /// The failed step (``cspawn_stage``), 0 on success.
    int stage;
};

/// Starts `path` as a supervised engine (docs/design/supervision.md, Spawning).
///
/// In the child, before `execve`: `PR_SET_PDEATHSIG(SIGKILL)`, a check that the parent is still the caller
/// (else `_exit`), `setsid()`, every signal disposition reset to default and the mask emptied, /dev/null on
/// 0, `output_fd` on 1 and 2, every descriptor >= 3 closed, and `chdir(directory)` when given. A failure
/// of any step, `execve` included, is reported back through a close-on-exec pipe, and the child is reaped.
///
/// Call it from ONE long-lived thread only: the kernel sends PDEATHSIG when the forking thread exits.
/// All memory the child needs (`argv`, `envp`, `path`) must be prepared by the caller: the child calls
/// only async-signal-safe functions.
struct cspawn_result cspawn_spawn(const char *path, char *const argv[], char *const envp[], int output_fd,
                                  const char *directory);

/// Makes this process the reaper of its orphaned descendants (`PR_SET_CHILD_SUBREAPER`).
/// Returns 0 or an errno.
int cspawn_set_child_subreaper(void);

/// `pipe2(fds, O_CLOEXEC)` (not visible to Swift without _GNU_SOURCE). Returns 0 or an errno.
int cspawn_pipe_cloexec(int fds[2]);

#ifdef __cplusplus
}
#endif

#endif
