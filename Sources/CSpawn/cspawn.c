#define _GNU_SOURCE
#include "cspawn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/// What the child writes to the status pipe when a step fails.
struct child_report {
    int stage;
    int error;
};

static void child_fail(int status_fd, int stage) {
    struct child_report report = {stage, errno};
    ssize_t ignored = write(status_fd, &report, sizeof report);
    (void)ignored;
    _exit(127);
}

/// Closes [low, high]; close_range when the kernel has it, else a loop.
static int close_span(unsigned int low, unsigned int high, long max_fd) {
    if (low > high) return 0;
#ifdef SYS_close_range
    if (syscall(SYS_close_range, low, high, 0) == 0) return 0;
    if (errno != ENOSYS) return -1;
#endif
    long last = (long)high < max_fd ? (long)high : max_fd;
    for (long fd = low; fd <= last; fd++) close((int)fd);
    return 0;
}

struct cspawn_result cspawn_spawn(const char *path, char *const argv[], char *const envp[], int output_fd,
                                  const char *directory) {
    struct cspawn_result result = {-1, 0, CSPAWN_STAGE_NONE};
    int status_pipe[2];
    if (pipe2(status_pipe, O_CLOEXEC) != 0) {
        result.error = errno;
        result.stage = CSPAWN_STAGE_PIPE;
        return result;
    }
    struct rlimit limit;
    long max_fd = 65535;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) max_fd = (long)limit.rlim_cur;
    pid_t parent = getpid();

    pid_t pid = fork();
    if (pid < 0) {
        result.error = errno;
        result.stage = CSPAWN_STAGE_FORK;
        close(status_pipe[0]);
        close(status_pipe[1]);
        return result;
    }
    if (pid == 0) {
        int status_fd = status_pipe[1];
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) child_fail(status_fd, CSPAWN_STAGE_PDEATHSIG);
        // The parent may have died before prctl took effect: then nobody would ever kill us.
        if (getppid() != parent) _exit(127);
        if (setsid() < 0) child_fail(status_fd, CSPAWN_STAGE_SETSID);

        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_handler = SIG_DFL;
        sigemptyset(&action.sa_mask);
        for (int signal_number = 1; signal_number < NSIG; signal_number++) {
            if (signal_number == SIGKILL || signal_number == SIGSTOP) continue;
            if (sigaction(signal_number, &action, NULL) != 0) {
                // glibc refuses the numbers it reserves for its threads (32, 33): ask the kernel directly.
                // SIG_DFL is 0, so an all-zero kernel sigaction means "default, no flags, empty mask".
                unsigned long kernel_action[4] = {0, 0, 0, 0};
                (void)syscall(SYS_rt_sigaction, signal_number, kernel_action, NULL, sizeof(unsigned long));
            }
        }
        sigset_t empty;
        sigemptyset(&empty);
        if (sigprocmask(SIG_SETMASK, &empty, NULL) != 0) child_fail(status_fd, CSPAWN_STAGE_SIGNALS);

        // A log descriptor among 0-2 would be clobbered by the dup2 calls below: move it up first.
        if (output_fd < 3) {
            output_fd = fcntl(output_fd, F_DUPFD, 3);
            if (output_fd < 0) child_fail(status_fd, CSPAWN_STAGE_DUP2);
        }
        int null_fd = open("/dev/null", O_RDWR);
        if (null_fd < 0) child_fail(status_fd, CSPAWN_STAGE_DEVNULL);
        if (dup2(null_fd, 0) < 0) child_fail(status_fd, CSPAWN_STAGE_DUP2);
        if (dup2(output_fd, 1) < 0) child_fail(status_fd, CSPAWN_STAGE_DUP2);
        if (dup2(output_fd, 2) < 0) child_fail(status_fd, CSPAWN_STAGE_DUP2);

        // Everything from 3 up goes, except the status pipe, which closes itself at exec.
        if (close_span(3, (unsigned int)status_fd - 1, max_fd) != 0) child_fail(status_fd, CSPAWN_STAGE_CLOSE_FDS);
        if (close_span((unsigned int)status_fd + 1, ~0U, max_fd) != 0) child_fail(status_fd, CSPAWN_STAGE_CLOSE_FDS);

        if (directory != NULL && chdir(directory) != 0) child_fail(status_fd, CSPAWN_STAGE_CHDIR);
        execve(path, argv, envp);
        child_fail(status_fd, CSPAWN_STAGE_EXEC);
    }

    close(status_pipe[1]);
    struct child_report report;
    ssize_t got;
    do {
        got = read(status_pipe[0], &report, sizeof report);
    } while (got < 0 && errno == EINTR);
    close(status_pipe[0]);
    if (got == (ssize_t)sizeof report) {
        // The child failed before or at exec: reap it here, it is ours alone.
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        result.error = report.error;
        result.stage = report.stage;
        return result;
    }
    if (got == 0) {
        result.pid = pid;
        return result;
    }
    // A short read cannot happen with a pipe and 8 bytes; treat it as the child's own exit.
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    result.error = EIO;
    result.stage = CSPAWN_STAGE_EXEC;
    return result;
}

int cspawn_set_child_subreaper(void) {
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 ? 0 : errno;
}

int cspawn_pipe_cloexec(int fds[2]) {
    return pipe2(fds, O_CLOEXEC) == 0 ? 0 : errno;
}
