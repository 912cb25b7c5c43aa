"""Running things: every command's output goes to the build log; a failure quotes its
tail. Commands inside a Debian tree run chrooted, in private mount (and, unless asked
otherwise, network) namespaces, so nothing they mount outlives them."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

from .inputs import BuildError

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CA_FILE = "/etc/ssl/certs/ca-certificates.crt"


class Log:
    """Every command's output goes to one log file; failures quote its tail."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.file = path.open("a", buffering=1)

    def note(self, text: str) -> None:
        self.file.write(text.rstrip("\n") + "\n")

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def run(self, argv: Sequence[str], what: str, hint: str = "", **kwargs) -> None:
        self.note(f"\n$ {shlex.join(argv)}")
        # its own process group, so that an interrupted build stops all of it (npm's
        # scripts, node-gyp, make) before its files are removed
        child = subprocess.Popen(
            list(argv),
            stdout=self.file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            **kwargs,
        )
        try:
            returncode = child.wait()
        except BaseException:
            for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=grace)
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(child.pid, signal.SIGKILL)  # what outlived its leader
                    break
            raise
        if returncode != 0:
            raise BuildError(
                f"{what} failed (exit {returncode}).{' ' + hint if hint else ''}\n"
                f"--- last lines of {self.path} ---\n{self.tail()}"
            )

    def capture(self, argv: Sequence[str], what: str) -> str:
        self.note(f"\n$ {shlex.join(argv)}")
        done = subprocess.run(list(argv), capture_output=True, text=True, stdin=subprocess.DEVNULL)
        self.note(done.stdout + done.stderr)
        if done.returncode != 0:
            raise BuildError(f"{what} failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-800:]}")
        return done.stdout


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve())
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return found


def remove_tree(path: Path) -> None:
    """rm -rf, but never through a mount (a leaked bind of /dev would be fatal)."""
    if not path.exists() and not path.is_symlink():
        return
    mounted = _mounts_under(path)
    if mounted:
        raise BuildError(f"refusing to delete {path}: still mounted there: {', '.join(mounted)}")
    shutil.rmtree(path)


def in_root(
    root: Path,
    script: str,
    log: Log,
    what: str,
    *,
    env: dict[str, str] | None = None,
    binds: Sequence[tuple[Path, str, bool]] = (),
    network: bool = False,
    hint: str = "",
) -> None:
    """Runs a shell script chrooted into `root`, in a private mount namespace (so no
    mount outlives it): /dev and /proc from the host, a fresh /tmp, and `binds`
    (host path, path inside, read-only). Without `network`, in an empty network namespace."""
    lines = [
        "set -eu",
        f"R={shlex.quote(str(root))}",
        'mount --rbind /dev "$R/dev"',
        'mount --rbind /proc "$R/proc"',
        'mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"',
    ]
    all_binds = list(binds)
    if network:
        all_binds.append((Path("/etc/resolv.conf").resolve(), "/etc/resolv.conf", True))
    for source, inside, read_only in all_binds:
        target = f'"$R"{shlex.quote(inside)}'
        if source.is_dir():
            lines.append(f"mkdir -p {target}")
        else:
            lines.append(f'mkdir -p "$(dirname {target})"; [ -e {target} ] || : > {target}')
        lines.append(f"mount --bind {shlex.quote(str(source))} {target}")
        if read_only:
            lines.append(f"mount -o remount,bind,ro {target}")
    environment = {"PATH": PATH, "HOME": "/tmp/home", "LANG": "C.UTF-8", **(env or {})}
    if network:
        for key in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
            if os.environ.get(key):
                environment[key] = os.environ[key]
    assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in environment.items())
    lines.append(
        f'exec chroot "$R" /usr/bin/env -i {assignments} /bin/sh -euc {shlex.quote("mkdir -p /tmp/home; " + script)}'
    )
    unshare = ["unshare", "--mount", "--propagation", "private"] + ([] if network else ["--net"])
    log.run([*unshare, "--", "sh", "-c", "\n".join(lines)], what, hint)
