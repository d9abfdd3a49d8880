"""Runs a command and measures it, its children and any orphans it leaves:

    python3 bench/measure.py STATS_FILE LOG_FILE -- COMMAND [ARG...]

COMMAND's stdout and stderr go to LOG_FILE. When it succeeds, one line is
written to STATS_FILE:

    wall_s cpu_s max_rss_kib tail_s

- wall_s: from starting COMMAND until COMMAND itself exits (when a shell
  prompt would come back);
- cpu_s: user + system CPU of COMMAND and of every process it started;
- max_rss_kib: the peak resident set of the largest single process among
  them (Linux's ru_maxrss; the biggest, not the sum of those alive together);
- tail_s: how long processes it left behind (orphans) ran after it exited.

Why not /usr/bin/time: GNU time reports the rusage that wait4() returns for
its child, which covers only descendants that were waited for by their own
parents. A process whose parent exits first (PySpark's JVM is started by the
Python driver, which exits without waiting for it) is reparented to init and
its CPU and memory are lost. Here this process marks itself a child
subreaper (prctl PR_SET_CHILD_SUBREAPER), so orphans of COMMAND are
reparented to it; it waits for all of them before reading
getrusage(RUSAGE_CHILDREN), which then covers every descendant.

Exits with COMMAND's status (128 + N if a signal N killed it).
"""

import ctypes
import os
import resource
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def main(argv):
    if len(argv) < 4 or argv[2] != "--":
        sys.exit(__doc__.split("\n\n")[1])
    stats_file, log_file, command = argv[0], argv[1], argv[3:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit(f"measure.py: prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")
    with open(log_file, "wb") as log:
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            try:
                os.dup2(log.fileno(), 1)
                os.dup2(log.fileno(), 2)
                os.execvp(command[0], command)
            except OSError as error:
                os.write(2, f"measure.py: {command[0]}: {error.strerror}\n".encode())
            os._exit(127)
    _, status = os.waitpid(pid, 0)
    end = time.monotonic()
    # Reap whatever COMMAND left running; each is our child now.
    while True:
        try:
            os.wait()
        except ChildProcessError:
            break
    tail = time.monotonic() - end
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        return 128 - code if code < 0 else code
    with open(stats_file, "w") as out:
        out.write(f"{end - start:.3f} {usage.ru_utime + usage.ru_stime:.3f} {usage.ru_maxrss} {tail:.3f}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
