"""The one supervisor of what the portable runner keeps running in the background
(nginx's master, and through runner/service.py the gate and the idle service): a pid
file, the check that the pid still is our process, and the stop with a timeout.

A pid outlives its process: the kernel hands it out again, so a pid file alone
would have `csm down` signal some other program. A process is ours only while its
command line (/proc/<pid>/cmdline) still holds every one of `marks`.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

from ..waiting import wait_until
from . import RunnerError


def command_line(pid: int) -> str | None:
    """The process's arguments joined by spaces, or None once it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None


def gone(pid: int) -> bool:
    """The process has ended; our own child is reaped, or it would linger as a zombie."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    except ChildProcessError:  # not our child (nginx's master daemonizes)
        pass
    return not Path(f"/proc/{pid}").exists()


@dataclass(frozen=True)
class Supervised:
    pid_file: Path  # its first word is the pid; more words are the writer's to use
    marks: tuple[str, ...]  # what our process's command line holds, and a stranger's does not

    def owns(self, pid: int) -> bool:
        line = command_line(pid)
        return line is not None and all(mark in line for mark in self.marks)

    def running(self) -> tuple[int, list[str]] | None:
        """(pid, the pid file's other words) of our process, if it runs."""
        try:
            pid_text, *rest = self.pid_file.read_text().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            return None
        return (pid, rest) if self.owns(pid) else None

    def record(self, pid: int, *words: str) -> None:
        self.pid_file.write_text(" ".join([str(pid), *words]) + "\n")

    def wait_running(self, timeout: float, what: str) -> int:
        """The pid, once the process (which writes its own pid file) runs."""
        found = wait_until(self.running, timeout, what, interval=0.05)
        return found[0]

    def stop(self, pid: int, first: signal.Signals, timeout: float, last: signal.Signals) -> None:
        """Signal our process `pid` with `first`, and after `timeout` s with `last` if
        it still runs; returns once it is gone."""
        name = f"{self.pid_file.stem} (pid {pid})"
        os.kill(pid, first)
        try:
            wait_until(lambda: gone(pid), timeout, f"{name} to stop", interval=0.05)
            return
        except TimeoutError:
            if not self.owns(pid):  # it ended just now, or its pid went to a stranger
                return
        os.kill(pid, last)
        try:
            wait_until(lambda: gone(pid), timeout, f"{name} to stop", interval=0.05)
        except TimeoutError:
            raise RunnerError(f"{name} still runs {timeout:g} s after {last.name}; stop it by hand") from None
