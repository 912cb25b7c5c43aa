"""The runner's supervisor (csm/runner/supervisor.py) with real processes: a pid file
names our process only while that process's command line still carries our marks,
and stop escalates to the last signal when the first is ignored."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from csm.runner.supervisor import Supervised, gone

SLEEPER = "import signal, sys, time; {setup}; print('ready', flush=True); time.sleep(60)  # csm-supervisor-test"


def spawn(setup: str = "pass") -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", SLEEPER.format(setup=setup)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


@pytest.fixture
def supervised(tmp_path):
    return Supervised(tmp_path / "test.pid", ("csm-supervisor-test", "time.sleep(60)"))


def test_running_only_while_the_pid_is_ours(supervised):
    assert supervised.running() is None  # no pid file
    proc = spawn()
    try:
        supervised.record(proc.pid, "digest")
        assert supervised.running() == (proc.pid, ["digest"])
        supervised.record(os.getpid(), "digest")  # a reused pid: some other program
        assert supervised.running() is None
    finally:
        proc.kill()
        proc.wait()
    supervised.record(proc.pid, "digest")
    assert supervised.running() is None  # ended


def test_stop_with_the_first_signal(supervised):
    proc = spawn()
    supervised.record(proc.pid)
    started = time.monotonic()
    supervised.stop(proc.pid, signal.SIGTERM, 5, signal.SIGKILL)
    assert time.monotonic() - started < 2
    assert gone(proc.pid) and supervised.running() is None


def test_stop_escalates_after_the_timeout(supervised):
    proc = spawn("signal.signal(signal.SIGTERM, signal.SIG_IGN)")
    supervised.record(proc.pid)
    started = time.monotonic()
    supervised.stop(proc.pid, signal.SIGTERM, 0.5, signal.SIGKILL)
    assert 0.5 <= time.monotonic() - started < 3
    assert gone(proc.pid)
    assert proc.returncode in (None, -signal.SIGKILL)


def test_wait_running_names_what_it_waited_for(supervised):
    with pytest.raises(TimeoutError, match="the test's pid file: not within 0.2 s"):
        supervised.wait_running(0.2, "the test's pid file")
