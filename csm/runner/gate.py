"""The runner's side of the gate (csm/gate): the host accounts it and nginx's workers
run as, the copies of the password files only the gate's account can read, and the
gate process itself (runner/service.py), started by `csm up` as that account.

On NixOS the module declares the same accounts and runs the gate as a hardened unit
whose systemd credentials are the password files.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

from csm.plan_types import Plan

from . import HostNotReady, files
from .service import Service, plan_digest

SERVICE = Service("gate", "csm.gate")
NOLOGIN = next((p for p in ("/usr/sbin/nologin", "/sbin/nologin") if os.path.exists(p)), "/bin/false")


def ensure_account(name: str) -> None:
    """A system account and group of that name, no home, no login (idempotent)."""
    try:
        pwd.getpwnam(name)
        return
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if useradd is None:
        raise HostNotReady(
            "useradd is missing (Debian: apt-get install passwd); csm up creates the accounts "
            f"the gate and nginx run as ({name})"
        )
    proc = subprocess.run(
        [
            useradd,
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            NOLOGIN,
            name,
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0 and "already exists" not in proc.stderr:
        raise HostNotReady(f"could not create the account {name}: {proc.stderr.strip()}")


def ensure_accounts(plan: Plan) -> None:
    ensure_account(plan.gate.user)
    ensure_account(plan.gate.proxyGroup)  # nginx's workers run as it (nginx.conf `user`)


def credentials_dir(state: Path) -> Path:
    return Path(state) / "credentials"


def write_credentials(state: Path, plan: Plan) -> None:
    """Each user's password file, copied where only the gate's account reads it
    (0700 directory, 0400 files), by the one rule for secret files."""
    owner = pwd.getpwnam(plan.gate.user)
    directory = credentials_dir(state)
    directory.mkdir(mode=0o700, exist_ok=True)
    os.chown(directory, owner.pw_uid, owner.pw_gid)
    os.chmod(directory, 0o700)
    for name, user in plan.users.items():
        path = directory / name
        files.write_private(path, files.password_text(user) + "\n", mode=0o400)
        os.chown(path, owner.pw_uid, owner.pw_gid)
    for stale in directory.iterdir():
        if stale.name not in plan.users:
            stale.unlink()


def start(stack, undo: list) -> str:
    state, plan = stack.state_dir, stack.plan
    socket = Path(plan.gate.socket)
    current = SERVICE.running(state)
    if not (current and current[1] == plan_digest(plan)):
        socket.unlink(missing_ok=True)  # a socket left by an earlier run is not an answer
    action = SERVICE.start(
        state, plan, ["--credentials", str(credentials_dir(state))], ready=socket.is_socket, user=plan.gate.user
    )
    if action == "started":
        undo.append(lambda: SERVICE.stop(state))
        stack.progress(f"gate running as {plan.gate.user} (log: {SERVICE.log(state)})")
    return action


def stop(state: Path) -> bool:
    return SERVICE.stop(state)
