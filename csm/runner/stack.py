"""The portable stack: the plan applied with podman, nginx and host directories.

    stack = Stack("examples/demo.nix", state_dir="/var/lib/code-server-multi", http_port=8080)
    stack.up()        # idempotent: only what changed is recreated
    stack.status()
    stack.down()      # containers and nginx stop; workspaces stay

The state directory holds what the runner needs between commands: the rendered
nginx.conf and nginx's pid, logs and temp files, the landing page, the local CA for
TLS, generated demo passwords, and stack.json (settings path, ports and the plan in
use), so `csm down` and `csm status` need no argument.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from csm.plan_types import Plan, User

from .. import plan as planlib
from .. import sockets
from ..waiting import wait_until
from . import (
    BadInput,
    HostNotReady,
    RunnerError,
    backends,
    backup,
    disks,
    files,
    gate,
    idle,
    nginx,
    passwd,
    podman,
    preflight,
)
from . import status as stack_status
from .host import Host
from .local_ca import ensure_certificate

DEFAULT_STATE_DIR = Path("/var/lib/code-server-multi")
DEFAULT_HTTP_PORT = 8080
DEFAULT_TLS_PORT = 8443
STATE_FILE = "stack.json"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_settings(path: str | os.PathLike) -> Plan:
    """The plan of a settings file; raises csm.plan.PlanError with the plan's message."""
    if not shutil.which("nix-instantiate"):
        raise HostNotReady(
            "nix-instantiate is not installed; run scripts/install-deps (Debian: apt-get install nix-bin)"
        )
    if Path(path).is_dir():
        raise BadInput(f"{path} is a directory; give the settings file, e.g. examples/demo.nix")
    return planlib.load(path)


class Stack:
    """One stack: a plan, the state directory that owns it, and nginx's ports.

    settings: a settings .nix file (evaluated now, raising csm.plan.PlanError) or a
    plan dict (e.g. from csm.plan.from_settings). tls_port: serve HTTPS there with a
    local CA (<state_dir>/tls/ca.crt) and redirect http_port to it.
    create_passwords: up() generates a password for users whose hashedPasswordFile
    is missing, keeping the plaintext in <state_dir>/passwords/<user> (mode 0600).
    """

    def __init__(
        self,
        settings: str | os.PathLike | Plan,
        state_dir: str | os.PathLike = DEFAULT_STATE_DIR,
        http_port: int = DEFAULT_HTTP_PORT,
        tls_port: int | None = None,
        *,
        host: Host | None = None,
        progress: Callable[[str], None] | None = None,
        create_passwords: bool = False,
        health_timeout: float = 180,
    ):
        if isinstance(settings, Plan):
            self.settings_path, self.plan = None, settings
        else:
            self.settings_path = Path(settings).resolve()
            self.plan = load_settings(self.settings_path)
        self.state_dir = Path(state_dir).resolve()
        self.http_port, self.tls_port = http_port, tls_port
        self.host = host or Host.detect()
        self.progress = progress or _stderr
        self.create_passwords = create_passwords
        self.health_timeout = health_timeout

    # ---- the recorded stack ------------------------------------------------------
    @staticmethod
    def recorded(state_dir: str | os.PathLike = DEFAULT_STATE_DIR) -> dict | None:
        """What the last `up` in state_dir recorded: settings, http_port, tls_port, plan
        (None, with plan_error saying why, if an older version of csm wrote it)."""
        path = Path(state_dir) / STATE_FILE
        try:
            rec = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise RunnerError(
                f"cannot read {path} ({e}); csm runs as root, and the file is csm's own "
                "(delete it only if no stack is running)"
            ) from None
        try:
            rec["plan"] = planlib.from_json(rec.get("plan"), str(path))
        except planlib.PlanError as e:
            rec["plan"], rec["plan_error"] = None, str(e)
        return rec

    @classmethod
    def from_state(cls, state_dir: str | os.PathLike = DEFAULT_STATE_DIR, **kwargs) -> Stack:
        """The stack the last `up` in state_dir brought up (for down, status, reset...)."""
        rec = cls.recorded(state_dir)
        if rec is None:
            raise BadInput(
                f"no stack has been brought up with state directory {state_dir}; "
                "run `csm up SETTINGS` first (or give --state-dir)"
            )
        if rec["plan"] is None:
            raise BadInput(rec["plan_error"])
        stack = cls(rec["plan"], state_dir, rec["http_port"], rec["tls_port"], **kwargs)
        stack.settings_path = Path(rec["settings"]) if rec.get("settings") else None
        return stack

    def _record(self) -> None:
        record = {
            "settings": str(self.settings_path) if self.settings_path else None,
            "http_port": self.http_port,
            "tls_port": self.tls_port,
            "plan": planlib.to_json(self.plan),
        }
        tmp = self.state_dir / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        os.replace(tmp, self.state_dir / STATE_FILE)

    # ---- small facts ---------------------------------------------------------------
    def user(self, name: str) -> User:
        if name not in self.plan.users:
            raise BadInput(f"no user {name!r} in the settings (users: {', '.join(sorted(self.plan.users))})")
        return self.plan.users[name]

    def url(self, name: str) -> str:
        host = self.user(name).hostname
        if self.tls_port:
            return f"https://{host}" + ("" if self.tls_port == 443 else f":{self.tls_port}")
        return f"http://{host}" + ("" if self.http_port == 80 else f":{self.http_port}")

    def password_file(self, name: str) -> Path:
        return self.state_dir / "passwords" / name

    def password(self, name: str) -> str | None:
        """The user's password if csm generated it and it is still the current one."""
        text = files.read_text(self.password_file(name))
        if text is None:
            return None
        password = text.rstrip("\n")
        p = self.user(name).password
        hashed = files.read_text(p.file) if p.hashed else None
        return password if hashed and passwd.verify(hashed.strip(), password) else None

    def _env_paths(self, user: User) -> tuple[Path, Path]:
        """The non-secret env file and the digest of the key files, root's own in runtimeDir."""
        runtime = Path(self.plan.runtimeDir)
        return runtime / f"{user.name}.config.env", runtime / f"{user.name}.env.sha256"

    @contextlib.contextmanager
    def lock(self):
        self.state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o755)  # nginx's workers read the landing page below it
        with open(self.state_dir / "lock", "w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunnerError(
                    f"another csm command is working on {self.state_dir}; wait for it to finish"
                ) from None
            yield

    # ---- up ------------------------------------------------------------------------------
    def up(self) -> dict[str, str]:
        """Bring the stack to the plan; returns what happened to each user's container
        (unchanged, started, created, recreated). Checks everything before changing
        anything; if applying fails, what this run started is stopped again."""
        with self.lock():
            preflight.check(self)
            undo: list[Callable[[], None]] = []
            try:
                return self._apply(undo)
            except BaseException:
                for step in reversed(undo):
                    with contextlib.suppress(Exception):
                        step()
                raise

    def _apply(self, undo: list) -> dict[str, str]:
        plan = self.plan
        gate.ensure_accounts(plan)
        for d in plan.directories:
            files.ensure_directory(d)
        undo.append(lambda: disks.release_base(plan.workspaceBase))  # runs after the unmounts below
        for user in plan.users.values():
            self._prepare(user, undo)
        if warning := disks.overcommit(plan):
            self.progress(f"warning: {warning}")
        if self.create_passwords:
            self._create_missing_passwords()
        gate.write_credentials(self.state_dir, plan)
        self._remove_departed_users()
        for user in plan.users.values():
            if podman.ensure_network(self.host, user, str(self.state_dir)) == "created":
                undo.append(lambda n=user.network.name: podman.remove_network(self.host, n))
        actions = {name: self._apply_user(user, undo) for name, user in plan.users.items()}
        self.wait_healthy([n for n, a in actions.items() if a not in ("unchanged", "stopped-idle")])
        nginx_action = self._apply_nginx(undo)
        self._record()
        gate_action = gate.start(self, undo)
        idle_action = idle.start_service(self, undo)
        if (
            nginx_action == "unchanged"
            and idle_action == "unchanged"
            and gate_action == "unchanged"
            and all(a in ("unchanged", "stopped-idle") for a in actions.values())
        ):
            self.progress("nothing to change: the stack already matches the settings")
        return actions

    def _create_missing_passwords(self) -> None:
        for name, user in self.plan.users.items():
            p = user.password
            if p.hashed and not os.path.lexists(p.file):
                password = passwd.generate()
                passwd.write_hash_file(p.file, passwd.hash_password(password))
                kept = self.password_file(name)
                kept.parent.mkdir(mode=0o700, exist_ok=True)
                files.write_private(kept, password + "\n", mode=0o600)
                self.progress(f"created a password for {name}: its hash is in {p.file}, the password in {kept}")

    def _prepare(self, user: User, undo: list) -> None:
        """The user's disk, directories and seed (files.prepare_user, as the NixOS unit
        runs it), with a quota too small refused; what this mounted, undo unmounts."""
        if files.prepare_user(user, self.progress, stop=lambda: self._stop(user, undo), strict=True):
            undo.append(lambda: disks.unmount(user.disk))  # the disk file and its files stay

    def _stop(self, user: User, undo: list) -> None:
        """Stop the user's container (for work on their disk); `up` starts it again,
        and so does its undo if `up` fails."""
        if self.backend.stop(user, "to work on its disk"):
            cname = user.container.name
            undo.append(lambda: podman.podman(self.host, "start", cname, check=False, cwd=self.state_dir))

    def _remove_departed_users(self) -> None:
        rec = self.recorded(self.state_dir)
        old_users = rec["plan"].users if rec and rec["plan"] else {}
        for c in podman.containers(self.host, f"{podman.STACK_LABEL}={self.state_dir}"):
            user = (c.get("Labels") or {}).get(self.plan.labels.user, "?")
            cname = c["Names"][0]
            if user in self.plan.users and self.plan.users[user].container.name == cname:
                continue
            self.progress(
                f"{user} is no longer in the settings: stopping and removing container {cname} (the workspace is kept)"
            )
            podman.remove(self.host, cname)
            if user in old_users:
                for p in self._env_paths(old_users[user]):
                    p.unlink(missing_ok=True)
        planned = {u.network.name for u in self.plan.users.values()}
        for network in podman.networks(self.host, f"{podman.STACK_LABEL}={self.state_dir}"):
            if network not in planned:
                podman.remove_network(self.host, network)

    def _apply_user(self, user: User, undo: list, force: bool = False) -> str:
        cname = user.container.name
        env_path, digest_path = self._env_paths(user)
        env = files.compose_env(user.container.environment)
        argv = podman.run_argv(user, self.host, str(self.state_dir), str(env_path))
        spec = podman.spec_digest(argv, env, podman.image_id(self.host, user.container.image))
        secrets = files.secrets_digest(user)
        info = podman.inspect(self.host, cname)
        same_spec = info is not None and podman.labels(info).get(podman.SPEC_LABEL) == spec
        same_secrets = files.read_text(digest_path) == secrets
        if info and same_spec and same_secrets and not force:
            if info["State"].get("Paused"):
                podman.podman(self.host, "unpause", cname)
                return "unchanged"
            if info["State"].get("Running"):
                return "unchanged"
            if idle.stopped_idle(self.plan, user.name):
                return "stopped-idle"  # its next visit starts it
            self.progress(f"starting the stopped container {cname}")
            podman.podman(self.host, "start", cname, cwd=self.state_dir)
            undo.append(lambda: podman.podman(self.host, "stop", cname, check=False))
            return "started"
        if info:
            why = (
                "a reset was asked for"
                if force
                else "its settings or its image changed"
                if not same_spec
                else "its key files changed"
            )
            self.progress(f"recreating {cname}: {why}")
            podman.remove(self.host, cname)
        else:
            self.progress(
                f"creating {cname} (the first start with a new uid map copies the image: this can take a minute)"
            )
        idle.forget(self.plan, [user.name])
        files.write_private(env_path, env)
        files.write_private(digest_path, secrets)
        undo.append(lambda: podman.remove(self.host, cname))
        proc = podman.podman(self.host, *podman.with_spec_label(argv, spec)[1:], check=False, cwd=self.state_dir)
        if proc.returncode != 0:
            raise RunnerError(f"podman could not start {cname}: {proc.stderr.strip()}")
        return "recreated" if info else "created"

    def wait_healthy(self, names: list[str]) -> None:
        if not names:
            return
        pending = list(names)
        self.progress(f"waiting for {', '.join(pending)} to pass the health check (up to {self.health_timeout:.0f} s)")
        start = last_report = time.monotonic()

        def all_healthy() -> bool:
            nonlocal last_report
            for name in list(pending):
                cname = self.plan.users[name].container.name
                info = podman.inspect(self.host, cname)
                # A restart means code-server died: the restart policy must not hide it.
                if not info or not info["State"].get("Running") or info.get("RestartCount"):
                    code = podman.last_exit_code(self.host, info) if info else None
                    raise RunnerError(
                        f"{name}'s container {cname} stopped (exit code {code}) instead of "
                        f"becoming healthy; see `csm logs {name}`"
                    )
                if podman.podman(self.host, "healthcheck", "run", cname, check=False).returncode == 0 and sockets.link(
                    self.plan.users[name]
                ):
                    pending.remove(name)
                    self.progress(f"{name} is healthy ({time.monotonic() - start:.0f} s)")
            now = time.monotonic()
            if pending and now - last_report >= 10:
                self.progress(f"still waiting for {', '.join(pending)} ({now - start:.0f} s)")
                last_report = now
            return not pending

        try:
            wait_until(all_healthy, self.health_timeout, "the health checks", interval=0.5)
        except TimeoutError:
            raise RunnerError(
                f"{', '.join(pending)} did not pass the health check within "
                f"{self.health_timeout:.0f} s; look at `csm logs {pending[0]}`"
            ) from None

    def _apply_nginx(self, undo: list) -> str:
        state = self.state_dir
        nginx.prepare(state, self.plan)
        tls = ensure_certificate(state, self.plan.domain, self.tls_port) if self.tls_port else None
        text = nginx.render(self.plan, state, self.http_port, tls)
        conf = state / "nginx.conf"
        pid = nginx.running_pid(state)
        rec = self.recorded(state)
        same_ports = rec is not None and (rec["http_port"], rec["tls_port"]) == (self.http_port, self.tls_port)
        if pid and same_ports and files.read_text(conf) == text:
            return "unchanged"
        new = state / "nginx.conf.new"
        new.write_text(text)
        try:
            nginx.test(state, new)
        except RunnerError:
            new.unlink()
            raise
        os.replace(new, conf)
        if pid and same_ports:
            nginx.reload(state)
            self.progress("nginx reloaded with the new config")
            return "reloaded"
        if pid:
            nginx.stop(state)
        nginx.start(state)
        undo.append(lambda: nginx.stop(state))
        ports = f"{self.http_port}" + (f" (redirect) and {self.tls_port} (TLS)" if self.tls_port else "")
        self.progress(f"nginx listening on port {ports}")
        return "started"

    # ---- down, reset, restart -------------------------------------------------------
    def down(self, unmount: bool = False) -> None:
        """Stop and remove this stack's containers, stop its nginx, delete the env
        files; with unmount, unmount the users' disks too (their files stay in the
        disk files). Workspaces, settings and passwords stay."""
        with self.lock():
            if idle.stop_service(self.state_dir):  # first: nothing wakes while containers go
                self.progress("idle service stopped")
            if gate.stop(self.state_dir):
                self.progress("gate stopped")
            idle.forget(self.plan, self.plan.users)
            for c in podman.containers(self.host, f"{podman.STACK_LABEL}={self.state_dir}"):
                self.progress(f"stopping {c['Names'][0]}")
                podman.remove(self.host, c["Names"][0])
            for network in podman.networks(self.host, f"{podman.STACK_LABEL}={self.state_dir}"):
                podman.remove_network(self.host, network)
            if nginx.stop(self.state_dir):
                self.progress("nginx stopped")
            rec = self.recorded(self.state_dir)
            users = list(self.plan.users.values()) + (list(rec["plan"].users.values()) if rec and rec["plan"] else [])
            for user in users:
                for p in self._env_paths(user):
                    p.unlink(missing_ok=True)
            if unmount:
                for image in disks.unmount_all(self.plan.workspaceBase):
                    self.progress(f"a disk unmounted (its files are in {image})")

    def reset(self, name: str) -> None:
        """A fresh container for one user; the workspace and settings (the home) stay."""
        user = self.user(name)
        with self.lock():
            if not podman.image_exists(self.host, user.container.image):
                raise HostNotReady(f"the image {user.container.image} is missing; build it with `make image`")
            undo: list = []
            self._prepare(user, undo)  # after a reboot without `up`, the disk is mounted first
            self._apply_user(user, undo, force=True)
            self.wait_healthy([name])

    def refresh_credentials(self) -> bool:
        """After `csm passwd`: the gate's copies of the password files anew (the gate
        rereads a changed file at once); False if no stack runs here."""
        if self.recorded(self.state_dir) is None:
            return False
        with self.lock():
            gate.write_credentials(self.state_dir, self.plan)
        return True

    # ---- backups ---------------------------------------------------------------------------
    def backup(self, target: str | os.PathLike | None = None) -> Path:
        """A consistent archive of every user's directory in target (default
        plan.backup.target), keeping the newest plan.backup.keep there."""
        return backup.create(self, target or self.plan.backup.target)

    def restore(self, archive: str | os.PathLike, users: list[str] | None = None) -> list[str]:
        """Restore users' directories from an archive made by backup(); checks the
        whole archive first. Running containers are stopped and started again."""
        with self.lock():
            return backup.restore(self, archive, users, self.backend)

    # ---- status --------------------------------------------------------------------------
    def status(self) -> stack_status.StackStatus:
        return stack_status.read(self)

    @property
    def backend(self) -> backends.Podman:
        """podman itself drives this stack's containers (csm/runner/backends.py)."""
        return backends.Podman(self.plan, self.state_dir, self.host, self.progress, runner=self)
