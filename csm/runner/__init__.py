"""The portable runner: applies the plan with podman, nginx and host directories.

`csm.runner.stack.Stack` is the entry point; the other modules are thin mappings of
one part of the plan each (podman.py, nginx.py, files.py), what `up` checks before it
changes anything (preflight.py), plus the admin tasks (passwd.py, backup.py).
"""

from __future__ import annotations


class RunnerError(Exception):
    """Something the runner cannot do; the message says what is wrong and what to do.

    exit_code tells the CLI how to exit: 1 an operation failed (whatever this run had
    started was undone), 2 bad input (settings, arguments, archive), 3 the host is not
    ready (a program, the image or a port is missing).
    """

    exit_code = 1


class BadInput(RunnerError):
    exit_code = 2


class HostNotReady(RunnerError):
    exit_code = 3
