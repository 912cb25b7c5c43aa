"""The CLI's one way of telling a person what is going on:

    ==> [3/8] label ...
        ... 30 s: <the last line of the log>
    ==> [3/8] label: done in 212 s

`say` prints one line; `Steps` numbers the steps of a long command and, while one runs,
repeats the last line of its log every `heartbeat` seconds so a quiet step is not
mistaken for a hung one."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path


def say(text: str, out=None) -> None:
    print(text, file=out or sys.stderr, flush=True)


def last_line(path: Path | None, width: int = 110) -> str:
    if path is None:
        return ""
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            # skip blank lines, npm's config chatter and compiler warnings' ^~~~ markers
            lines = [
                line
                for line in f.read().decode(errors="replace").splitlines()
                if sum(ch.isalpha() for ch in line) >= 3 and "Unknown env config" not in line
            ]
        return lines[-1].strip()[:width] if lines else ""
    except OSError:
        return ""


class Steps:
    def __init__(self, total: int, log_path: Path | None = None, heartbeat: float = 30.0, out=None):
        self.total = total
        self.log_path = log_path
        self.heartbeat = heartbeat
        self.out = out
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        say(text, self.out)

    @contextlib.contextmanager
    def step(self, number: int, label: str) -> Iterator[dict]:
        """Yields a dict; set result["note"] to replace "done in N s" (e.g. "cached")."""
        result: dict = {}
        started = time.monotonic()
        head = f"==> [{number}/{self.total}] {label}"
        self.say(f"{head} ...")
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.heartbeat):
                self.say(f"    ... {time.monotonic() - started:.0f} s: {last_line(self.log_path)}")

        thread = threading.Thread(target=beat, daemon=True)
        thread.start()
        try:
            yield result
        except BaseException:
            self.say(f"{head}: FAILED after {time.monotonic() - started:.0f} s")
            raise
        finally:
            stop.set()
            thread.join()
        self.say(f"{head}: {result.get('note') or f'done in {time.monotonic() - started:.0f} s'}")

    def elapsed(self) -> float:
        return time.monotonic() - self.started
