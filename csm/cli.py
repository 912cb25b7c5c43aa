"""csm: bring code-server-multi up on this host, and look after it.

Progress goes to stderr, results (addresses, archive paths, status) to stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from csm.plan_types import Plan

from . import plan as planlib
from . import sockets
from .gate.core import session_store
from .runner import BadInput, RunnerError, backends, backup, files, passwd, units
from .runner.stack import DEFAULT_HTTP_PORT, DEFAULT_STATE_DIR, DEFAULT_TLS_PORT, Stack, load_settings
from .waiting import wait_until

EXIT_CODES = """\
exit codes:
  0  done (for status: every user healthy)
  1  an operation failed; whatever this run had started was stopped again
     (for status: some user is not healthy)
  2  bad input: command line, settings, user name, archive
  3  the host is not ready: a program, the image, a file or a port is missing
"""

# Subcommands other modules implement; imported only when used.
DELEGATED = {
    "image": ("csm.image", "build or reuse the portable image (`csm image build`)"),
    "smoke": ("csm.checks.smoke", "check a running deployment from outside (`csm smoke URL`)"),
    "idle": (
        "csm.idle.service",
        "the root side: stop idle users, start them for the gate (`csm idle serve`; `csm up` runs it)",
    ),
    "gate": ("csm.gate.__main__", "the login gate in front of every workspace (`csm gate serve`; `csm up` runs it)"),
    "kube": ("csm.kube", "the same plan as Kubernetes objects (`csm kube render SETTINGS | kubectl apply -f -`)"),
}


def _state_dir(args) -> Path:
    return Path(args.state_dir)


def _read_plan(path: str) -> Plan:
    try:
        return planlib.load_plan(path)
    except planlib.PlanError as e:
        raise BadInput(str(e)) from None


def _stack(args) -> Stack:
    if getattr(args, "plan", None):
        return Stack(_read_plan(args.plan), _state_dir(args))
    return Stack.from_state(_state_dir(args))


def _print_addresses(stack: Stack) -> None:
    print("Open in a browser:")
    for name, user in stack.plan.users.items():
        password = stack.password(name)
        hint = (
            f"password: {password}"
            if password
            else f"password: the one in {user.password.file} (change it: csm passwd {name})"
        )
        print(f"  {stack.url(name)}   {hint}")
    if stack.tls_port:
        print(f"The certificate is from a local CA; trust {stack.state_dir / 'tls' / 'ca.crt'} in the browser.")
    print("`csm down` (or `make down`) stops it; workspaces are kept.")


def _stack_choice(args, state: Path) -> tuple[str, int, int | None]:
    """Settings file, HTTP port and TLS port (or None): as given, else as the last `up`
    in `state` recorded them."""
    rec = Stack.recorded(state) or {}
    settings = args.settings or rec.get("settings")
    if not settings:
        raise BadInput(
            f"no settings file given, and none recorded in {state}; run `csm {args.command} SETTINGS`, "
            "e.g. with examples/demo.nix"
        )
    http_port = args.http_port or rec.get("http_port") or DEFAULT_HTTP_PORT
    tls_port = None if args.no_tls else args.tls or rec.get("tls_port")
    return settings, http_port, tls_port


def cmd_up(args) -> int:
    state = _state_dir(args)
    settings, http_port, tls_port = _stack_choice(args, state)
    stack = Stack(
        settings, state, http_port, tls_port, create_passwords=args.create_passwords, health_timeout=args.timeout
    )
    stack.up()
    _print_addresses(stack)
    return 0


def cmd_install_units(args) -> int:
    state = _state_dir(args).absolute()
    chosen, http_port, tls_port = _stack_choice(args, state)
    settings = Path(chosen).absolute()
    load_settings(settings)  # a unit that could not bring the stack up is not written
    program = units.csm_program()
    units.check_root_only(program)  # root runs it at boot
    text = units.render(program, settings, state, http_port, tls_port)
    path = units.install(text, Path(args.unit_dir), args.unit)
    print(
        f"wrote {path}: at boot it runs `csm up {settings}` (HTTP port {http_port}"
        f"{f', HTTPS port {tls_port}' if tls_port else ''}, state in {state})."
    )
    print(f"Turn it on with: systemctl enable --now {args.unit}")
    return 0


def cmd_down(args) -> int:
    Stack.from_state(_state_dir(args)).down(unmount=args.unmount)
    print("stopped; workspaces are kept (`csm up` starts them again)")
    return 0


def _size(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _when(epoch: float | None) -> str:
    if not epoch:
        return "none since start"
    ago = max(0, time.time() - epoch)
    stamp = dt.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")
    return f"{stamp} ({ago / 60:.0f} min ago)" if ago >= 120 else f"{stamp} ({ago:.0f} s ago)"


def _backend(args, stack: Stack) -> backends.Backend:
    """The one place that tells the hosts apart: with --plan (the module's plan.json) the
    NixOS units run everything; otherwise the runner's own stack does."""
    return backends.Systemd(stack.plan) if getattr(args, "plan", None) else stack.backend


def cmd_status(args) -> int:
    stack = _stack(args)
    st = stack.status()
    backend = _backend(args, stack)
    units = backend.annotate(st)
    healthy = st.healthy and all(state == "active" for state in units.values())
    if args.json:
        print(json.dumps(asdict(st) | {"units": units, "healthy": healthy}, indent=1))
        return 0 if healthy else 1
    print("\n".join(backend.front_lines(st)))
    rows = [
        (
            "USER",
            "CONTAINER",
            "STATE",
            "HEALTH",
            "MEMORY / LIMIT",
            "DISK / QUOTA",
            "OOM KILLS",
            "RESTARTS",
            "LAST ACTIVITY",
            "SINCE",
        )
    ]
    for u in st.users:
        state = u.state if u.exit_code is None else f"{u.state} ({u.exit_code})"
        if u.activity.startswith("stopped"):  # running / stopped-idle / stopped-by-admin: <podman's state>
            state = u.activity if u.activity.startswith("stopped-idle") else f"{u.activity}: {state}"
        if u.name in units and units[u.name] != "active":
            state += f", unit {units[u.name]}"
        rows.append(
            (
                u.name,
                u.container,
                state,
                u.health,
                f"{_size(u.memory_bytes)} / {_size(u.memory_limit_bytes)}",
                "-"
                if u.disk_used_bytes is None
                else f"{_size(u.disk_used_bytes)} / {_size(u.disk_quota_bytes)} ({u.disk_percent}%)",
                "-" if u.oom_kills is None else str(u.oom_kills),
                "-" if u.restarts is None else str(u.restarts),
                _when(u.last_activity),
                _when(u.since) if u.since else "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0 if healthy else 1


def cmd_passwd(args) -> int:
    if sum(map(bool, (args.output, args.plan, args.settings))) > 1:
        raise BadInput("give one of SETTINGS, --plan and --output")
    stack = None if args.output else Stack(args.settings, _state_dir(args)) if args.settings else _stack(args)
    file = passwd.hashed_password_file(stack.plan, args.user) if stack else args.output
    passwd.write_hash_file(file, passwd.hash_password(passwd.read()))
    print(f"wrote the argon2id hash for {args.user} to {file} (mode 0600)")
    if stack is None:  # a file for later: no deployment to tell
        return 0
    if Path(stack.plan.gate.stateDir).is_dir():  # else the gate never ran: no sessions
        revoked = session_store(stack.plan).revoke(args.user)
        print(f"ended {args.user}'s {revoked} session(s): every browser logs in again with the new password")
    print(_backend(args, stack).passwords_changed(args.user))
    return 0


def cmd_sessions(args) -> int:
    plan = _read_plan(args.plan) if args.plan else Stack.from_state(_state_dir(args)).plan
    if args.user is not None and args.user not in plan.users:
        raise BadInput(f"no user {args.user!r} in the plan (users: {', '.join(sorted(plan.users))})")
    store = session_store(plan)
    if args.revoke:
        if args.user is None:
            raise BadInput("say whose sessions to end: csm sessions USER --revoke")
        print(f"ended {store.revoke(args.user)} session(s) of {args.user}: they log in again")
        return 0
    rows = [("USER", "SESSION", "LOGGED IN", "LAST USED")] + [
        (s.user, s.id, _clock(s.created), _clock(s.last_seen)) for s in store.sessions(args.user)
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _clock(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M")


def cmd_check_plan(args) -> int:
    plan = _read_plan(args.file)
    print(f"{args.file}: a plan csm reads, for {', '.join(sorted(plan.users)) or 'no users'}")
    return 0


def cmd_prepare(args) -> int:
    if not args.plan:
        raise BadInput("give the plan: csm prepare --plan /etc/code-server-multi/plan.json USER")
    plan = _read_plan(args.plan)
    if args.user not in plan.users:
        raise BadInput(f"no user {args.user!r} in the plan {args.plan} (users: {', '.join(sorted(plan.users))})")
    user = plan.users[args.user]
    if args.started:
        try:
            wait_until(lambda: sockets.link(user), 60, f"{args.user}'s socket", interval=0.5)
        except TimeoutError:
            raise RunnerError(
                f"{user.socketSource} is no socket of {args.user}'s container after 60 s; "
                f"nginx cannot reach {args.user}: see `journalctl -u {user.container.unit}`"
            ) from None
        print(f"{args.user}: code-server's socket linked for nginx", file=sys.stderr)
        return 0
    files.prepare_user(user, progress=lambda m: print(m, file=sys.stderr, flush=True))
    print(f"{args.user}: disk, directories and settings seed ready", file=sys.stderr)
    return 0


def cmd_reset(args) -> int:
    stack = _stack(args)
    _backend(args, stack).restart(stack.user(args.user))
    print(f"{args.user} has a fresh container; the workspace and settings were kept")
    return 0


def cmd_backup(args) -> int:
    print(_stack(args).backup(args.to))
    return 0


def cmd_restore(args) -> int:
    stack = Stack(args.settings, _state_dir(args)) if args.settings else _stack(args)
    with stack.lock():
        users = backup.restore(stack, args.archive, args.user or None, _backend(args, stack))
    print(f"restored {', '.join(users)} from {args.archive}")
    return 0


def cmd_logs(args) -> int:
    stack = _stack(args)
    return _backend(args, stack).logs(stack.user(args.user), follow=args.follow, tail=args.tail)


class _Formatter(argparse.HelpFormatter):
    """Descriptions wrap; the exit-code table keeps its lines."""

    def _fill_text(self, text, width, indent):
        return text if text == EXIT_CODES else super()._fill_text(text, width, indent)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        default=os.environ.get("CSM_STATE_DIR", str(DEFAULT_STATE_DIR)),
        help=f"where csm keeps nginx's config, pid and logs, the local CA, generated "
        f"passwords and the stack in use (default {DEFAULT_STATE_DIR}, or $CSM_STATE_DIR)",
    )
    stack_opts = argparse.ArgumentParser(add_help=False)  # what `up` brings up, and a boot unit too
    stack_opts.add_argument(
        "settings",
        nargs="?",
        metavar="SETTINGS",
        help="settings file, e.g. examples/demo.nix (default: the one the last `up` used)",
    )
    stack_opts.add_argument(
        "--http-port",
        type=int,
        metavar="PORT",
        help=f"nginx's HTTP port (default: the last one used, else {DEFAULT_HTTP_PORT})",
    )
    stack_opts.add_argument(
        "--tls",
        type=int,
        nargs="?",
        const=DEFAULT_TLS_PORT,
        metavar="PORT",
        help=f"also serve HTTPS on PORT (default {DEFAULT_TLS_PORT}) with a certificate from a "
        "local CA made in the state directory; the HTTP port then redirects to it",
    )
    stack_opts.add_argument(
        "--no-tls", action="store_true", help="serve HTTP only (stop serving HTTPS, if an earlier `up --tls` did)"
    )
    plan_opt = argparse.ArgumentParser(add_help=False)
    plan_opt.add_argument(
        "--plan",
        metavar="PLAN.json",
        help="use this plan (JSON, as the NixOS module writes it) instead of the stack in --state-dir",
    )

    p = argparse.ArgumentParser(
        prog="csm",
        description="code-server-multi: every person their own VS Code in the browser, "
        "with opencode, one container each, behind nginx.",
        epilog=EXIT_CODES,
        formatter_class=_Formatter,
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name, func, help, description, parents=(common,)):
        c = sub.add_parser(
            name,
            help=help,
            description=description,
            parents=list(parents),
            epilog=EXIT_CODES,
            formatter_class=_Formatter,
        )
        c.set_defaults(func=func)
        return c

    c = command(
        "up",
        cmd_up,
        "bring the stack up (or up to date) from a settings file",
        "Evaluate SETTINGS (a Nix file, see examples/) into the plan and apply it: host directories, "
        "one container per user, nginx in front. Running it again changes nothing; after a settings "
        "change only the users whose containers changed are recreated, and containers of users "
        "removed from the settings are stopped (their workspaces are kept). Everything is checked "
        "before anything changes; if applying fails, what this run started is stopped again.",
        parents=(common, stack_opts),
    )
    c.add_argument(
        "--create-passwords",
        action="store_true",
        help="for users whose hashedPasswordFile does not exist yet, generate a password, write its "
        "hash there, and keep the password in STATE_DIR/passwords/USER (mode 0600) so that it "
        "is printed with the address (what `make demo` does)",
    )
    c.add_argument(
        "--timeout",
        type=float,
        default=180,
        metavar="SECONDS",
        help="how long to wait for each container's health check (default 180)",
    )

    c = command(
        "install-units",
        cmd_install_units,
        "start the stack at boot on a host with systemd",
        "Write a systemd unit (default /etc/systemd/system/code-server-multi.service) that runs "
        "`csm up` at boot and `csm down` at shutdown, with SETTINGS, the ports and the state "
        "directory given here (defaults: what the last `up` in --state-dir used). The settings are "
        "evaluated first; a file of that name not written by this command is never replaced. Root runs "
        "the unit, so it names this csm by path with a fixed PATH, and nothing is written if anyone "
        "but root could change this csm, its Python, venv or code, or a directory on the way. Then "
        "`systemctl enable --now` the unit. NixOS needs none: the module's units start at boot.",
        parents=(common, stack_opts),
    )
    c.add_argument(
        "--unit-dir",
        default=str(units.UNIT_DIR),
        metavar="DIR",
        help=f"where to write the unit (default {units.UNIT_DIR})",
    )
    c.add_argument(
        "--unit",
        default=units.DEFAULT_UNIT,
        metavar="NAME.service",
        help=f"the unit's file name (default {units.DEFAULT_UNIT})",
    )

    c = command(
        "down",
        cmd_down,
        "stop the stack (workspaces are kept)",
        "Stop and remove this stack's containers and stop its nginx. Workspaces, homes, settings "
        "and passwords are never deleted; `csm up` starts everything again. The users' disks stay "
        "mounted, so their files stay where they were, unless --unmount.",
    )
    c.add_argument(
        "--unmount",
        action="store_true",
        help="also unmount the users' disks (their files stay in workspaceBase/.disks/<name>.ext4), "
        "e.g. before moving or deleting workspaceBase",
    )

    c = command(
        "status",
        cmd_status,
        "per user: container state, health, memory, OOM kills, restarts, last activity",
        "Show nginx, the login gate and, per user, the container state (running, stopped-idle: stopped "
        "for being idle and started again after its owner's login, or stopped-by-admin) and since when, "
        "the health check, memory in use against the limit, disk use against the quota, OOM kills, restarts "
        "after a crash and the last activity.",
        parents=(common, plan_opt),
    )
    c.add_argument("--json", action="store_true", help="print JSON instead of a table")

    c = command(
        "passwd",
        cmd_passwd,
        "set a user's password",
        "Read a new password (prompted twice on a terminal, else from stdin, where exactly one "
        "trailing newline is dropped) and write its argon2id hash (at least code-server's own cost) "
        "to the user's hashedPasswordFile (mode 0600, directory 0700); the hash is never printed. "
        "Every session of the user ends. On NixOS (--plan) the gate's unit is restarted to read "
        "the new file; with the portable runner the gate gets the new password at once.",
        parents=(common, plan_opt),
    )
    c.add_argument("user", metavar="USER")
    c.add_argument(
        "settings",
        nargs="?",
        metavar="SETTINGS",
        help="settings file naming the user's hashedPasswordFile (default: the stack in --state-dir)",
    )
    c.add_argument(
        "--output",
        metavar="PATH",
        help="write the hash to PATH instead (e.g. to put it into sops); nothing is restarted",
    )

    c = command(
        "sessions",
        cmd_sessions,
        "list who is logged in, or end a user's sessions",
        "List the gate's sessions (user, a short id, when logged in, when last used), or with "
        "--revoke end every session of USER: their browsers get the login page again. Session "
        "values are never stored or shown, only their hashes' first characters.",
        parents=(common, plan_opt),
    )
    c.add_argument("user", nargs="?", metavar="USER")
    c.add_argument("--revoke", action="store_true", help="end every session of USER")

    c = command(
        "check-plan",
        cmd_check_plan,
        "check a plan.json as csm reads it (the NixOS module's build runs it)",
        "Read FILE as the gate, the idle service and `csm --plan` do, every field checked; "
        "exit 2 with the field that differs when this csm cannot use it.",
        parents=(),
    )
    c.add_argument("file", metavar="FILE")

    c = command(
        "prepare",
        cmd_prepare,
        "make ready what a user's container needs before it starts (NixOS unit)",
        "What the NixOS module's unit runs before each start of USER's container (preStart): the "
        "plan's directories and the VS Code settings seed where missing (byte for byte). The portable runner's "
        "`up` does the same with the same code. With --started (postStart): link the socket "
        "code-server made, once it is one, where nginx reaches it.",
        parents=(common, plan_opt),
    )
    c.add_argument("user", metavar="USER")
    c.add_argument("--started", action="store_true", help="after the start: link code-server's socket for nginx")

    c = command(
        "reset",
        cmd_reset,
        "give a user a fresh container (workspace and settings kept)",
        "Remove USER's container and start a new one from the image. The workspace and the home "
        "(VS Code settings, extensions state, shell history) stay as they are. On NixOS (--plan) "
        "this restarts the user's unit, which runs a new container.",
        parents=(common, plan_opt),
    )
    c.add_argument("user", metavar="USER")

    c = command(
        "backup",
        cmd_backup,
        "archive every user's workspace and home",
        "Write a tar.gz of every user's directory (workspace and home, numeric owners and modes "
        "kept, and a manifest naming the stack) into DIR, pausing each user's container while "
        "their files are read. Only the newest backup.keep archives of this stack are kept in DIR. "
        "Prints the archive's path.",
        parents=(common, plan_opt),
    )
    c.add_argument("--to", metavar="DIR", help="directory for the archive (default: backup.target of the settings)")

    c = command(
        "restore",
        cmd_restore,
        "restore workspaces and homes from a backup",
        "Check ARCHIVE completely (readable, ours, for this stack's domain, nothing outside the "
        "users' directories), then replace each user's directory with the archived one, owners "
        "and modes kept. A running container is stopped for it and started again.",
        parents=(common, plan_opt),
    )
    c.add_argument("archive", metavar="ARCHIVE")
    c.add_argument("--user", action="append", metavar="USER", help="restore only this user (repeatable)")
    c.add_argument(
        "--settings", metavar="SETTINGS", help="settings file of the stack (on a new host, before the first `csm up`)"
    )

    c = command(
        "logs",
        cmd_logs,
        "show a user's container log",
        "Show the log of USER's container (code-server).",
        parents=(common, plan_opt),
    )
    c.add_argument("user", metavar="USER")
    c.add_argument("--follow", "-f", action="store_true", help="keep printing new lines")
    c.add_argument("--tail", type=int, metavar="N", help="only the last N lines")

    for name, (_, help) in DELEGATED.items():
        sub.add_parser(name, help=help, add_help=False)
    return p


def _delegate(name: str, argv: list[str]) -> int:
    module_name = DELEGATED[name][0]
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        print(f"csm {name}: not available ({module_name} cannot be imported: {e})", file=sys.stderr)
        return 1
    return module.main(argv) or 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in DELEGATED:
        return _delegate(argv[0], argv[1:])
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except planlib.PlanError as e:
        print(f"csm {args.command}: {e}", file=sys.stderr)
        return 2
    except RunnerError as e:
        print(f"csm {args.command}: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        print(f"csm {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"csm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
