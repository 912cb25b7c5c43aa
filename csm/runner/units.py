"""`csm install-units`: a systemd unit that brings the portable runner's stack up at
boot and down at shutdown (on NixOS the module's own units do this).

The unit is a oneshot that runs `csm up` and `csm down` with the settings, ports and
state directory given here, so a reboot gives back the stack as it was last brought
up. Crashes while it runs are the idle service's and podman's business (see
csm/idle/restarts.py), not the unit's.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from . import BadInput, HostNotReady

UNIT_DIR = Path("/etc/systemd/system")
DEFAULT_UNIT = "code-server-multi.service"
MARK = "# Written by `csm install-units`"


def _quoted(value: str) -> str:
    if "\n" in value:
        raise BadInput(f"{value!r} holds a line break, which a systemd unit cannot carry; rename it")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")   # % starts a specifier
    return f'"{escaped}"'


def exec_word(arg: str) -> str:
    """One word of ExecStart=/ExecStop=, as systemd reads it back ($ would expand a variable)."""
    return _quoted(arg).replace("$", "$$")


def environment(name: str, value: str) -> str:
    """An Environment= line (systemd takes $ literally there)."""
    return f"Environment={_quoted(f'{name}={value}')}"


def csm_program() -> str:
    """The csm this command runs as (e.g. a checkout's .venv/bin/csm), by absolute path."""
    invoked = Path(sys.argv[0])
    if invoked.name == "csm" and invoked.exists():
        return str(invoked.absolute())
    found = shutil.which("csm")
    if not found:
        raise HostNotReady("cannot tell which csm the unit should run; run install-units as that csm, "
                           "e.g. /path/to/checkout/.venv/bin/csm install-units")
    return str(Path(found).absolute())


def render(csm: str, settings: Path, state_dir: Path, http_port: int, tls_port: int | None) -> str:
    # Every choice spelt out: `up` would otherwise take what its last run recorded.
    up = [csm, "up", str(settings), "--http-port", str(http_port)] + (["--tls", str(tls_port)] if tls_port else ["--no-tls"])
    env = {"CSM_STATE_DIR": str(state_dir), "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
    return "\n".join([
        f"{MARK}: run it again to change this file; to drop it,",
        "# `systemctl disable --now` the unit and delete the file.",
        "[Unit]",
        "Description=code-server-multi (portable runner, state in {})".format(str(state_dir).replace("%", "%%")),
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=oneshot",
        "RemainAfterExit=yes",
        # `up` waits for every user's health check; the first start after an image
        # change copies the image for each uid map.
        "TimeoutStartSec=20min",
        *(environment(k, v) for k, v in env.items()),
        "ExecStart=" + " ".join(exec_word(a) for a in up),
        "ExecStop=" + " ".join(exec_word(a) for a in [csm, "down"]),
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])


def install(text: str, unit_dir: Path, unit: str) -> Path:
    """Write the unit (only over one this command wrote) and have systemd read it."""
    if "/" in unit or not unit.endswith(".service"):
        raise BadInput(f"unit name {unit!r}: give a file name ending in .service, e.g. {DEFAULT_UNIT}")
    if not unit_dir.is_dir():
        raise HostNotReady(f"{unit_dir} is not a directory: is this a host with systemd? (--unit-dir picks another)")
    path = unit_dir / unit
    if path.exists() and not path.read_text(errors="replace").startswith(MARK):
        raise BadInput(f"{path} exists and was not written by `csm install-units`; it is left as it is. "
                       "Pick another name with --unit, or move that file away")
    tmp = path.with_name(f".{unit}.tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    os.replace(tmp, path)
    if unit_dir == UNIT_DIR and Path("/run/systemd/system").is_dir():
        subprocess.run(["systemctl", "daemon-reload"], check=False)
    return path
