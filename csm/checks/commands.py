"""How the checks run commands: a runner takes one shell command line and returns its
stdout, raising on a non-zero exit (`machine.succeed` in a NixOS VM test,
`subprocess_runner` on this host), and `Podman` sends podman commands through one.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from typing import TypeVar

Runner = Callable[[str], str]


class CommandFailed(RuntimeError):
    def __init__(self, command: str, returncode: int, stdout: str, stderr: str):
        self.command, self.returncode, self.stdout, self.stderr = command, returncode, stdout, stderr
        detail = (stderr or stdout).strip()[-600:]
        super().__init__(f"`{command}` exited with {returncode}" + (f": {detail}" if detail else ""))


def subprocess_runner(command: str, timeout: float = 300) -> str:
    """A `machine.succeed` for this host: runs a shell command, returns stdout.
    Each command runs in a scratch directory: a container it starts keeps that as its
    conmon's working directory, where conmon writes a file `oom` on every OOM kill."""
    with tempfile.TemporaryDirectory(prefix="csm-run-") as scratch:
        done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=timeout, cwd=scratch)
    if done.returncode != 0:
        raise CommandFailed(command, done.returncode, done.stdout, done.stderr)
    return done.stdout


class Podman:
    """podman, driven through a runner (see the module docstring)."""

    def __init__(self, run: Runner = subprocess_runner, podman: str = "podman", run_args: Sequence[str] = ()):
        self._run = run
        self.podman = podman
        self.run_args = tuple(run_args)

    @classmethod
    def local(cls) -> Podman:
        from csm.runner.host import Host

        host = Host.detect()
        return cls(subprocess_runner, host.podman, host.run_args)

    def __call__(self, *args: str) -> str:
        return self._run(shlex.join([self.podman, *args]))

    def host(self, command: str) -> str:
        """A shell command on the host that runs podman (e.g. curl to a published port)."""
        return self._run(command)

    def run(self, image: str, *command: str, options: Sequence[str] = ()) -> str:
        """`podman run --rm` with this host's flags; returns the command's stdout."""
        return self("run", "--rm", "--pull=never", *self.run_args, *options, image, *command)

    def sh(self, image: str, script: str, options: Sequence[str] = ()) -> str:
        return self.run(image, "sh", "-c", script, options=options)

    def inspect(self, image: str) -> dict:
        out = self("image", "inspect", image)
        data = json.loads(out)
        return data[0] if isinstance(data, list) else data


def password_env_file(podman: Podman) -> str:
    """A fresh random PASSWORD in an env file (for --env-file) that only its owner can
    read, on the host that runs podman, made there so that it is on no command line;
    its path. The caller removes it (podman.host(f"rm -f {shlex.quote(path)}"))."""
    return podman.host(
        "umask 077; f=$(mktemp); "  # printf is the shell's own: no argv shows it
        "printf 'PASSWORD=%s\\n' \"$(head -c 18 /dev/urandom | base64 | tr -d '/+=')\" > \"$f\"; "
        'echo "$f"'
    ).strip()


T = TypeVar("T")


def saw(what: str, action: Callable[[], T]) -> T:
    """Runs a podman command; a failure becomes an AssertionError saying what it saw."""
    try:
        return action()
    except AssertionError:
        raise
    except Exception as e:  # machine.succeed raises a plain Exception
        raise AssertionError(f"{what}: {e}") from e
