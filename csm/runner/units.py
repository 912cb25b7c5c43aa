"""`csm install-units`: a systemd unit that brings the portable runner's stack up at
boot and down at shutdown (on NixOS the module's own units do this).

The unit is a oneshot that runs `csm up` and `csm down` with the settings, ports and
state directory given here, so a reboot gives back the stack as it was last brought
up. Crashes while it runs are the idle service's and podman's business (see
csm/idle/restarts.py), not the unit's.

The unit runs as root, so it names csm by absolute path with a fixed PATH, and is
written only when everything it would run (csm, its interpreter, its venv, its code,
the PATH's directories, and every directory on the way to them) only root can change.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path

from . import BadInput, HostNotReady

UNIT_DIR = Path("/etc/systemd/system")
DEFAULT_UNIT = "code-server-multi.service"
MARK = "# Written by `csm install-units`"
# What `csm up` needs (podman, nginx, nix-instantiate, runc) lies there on a Debian host;
# the caller's PATH (a user's ~/bin, a pyenv shim) is not copied into a root unit.
UNIT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _quoted(value: str) -> str:
    if "\n" in value:
        raise BadInput(f"{value!r} holds a line break, which a systemd unit cannot carry; rename it")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")  # % starts a specifier
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
        raise HostNotReady(
            "cannot tell which csm the unit should run; run install-units as that csm, "
            "e.g. /path/to/checkout/.venv/bin/csm install-units"
        )
    return str(Path(found).absolute())


def render(csm: str, settings: Path, state_dir: Path, http_port: int, tls_port: int | None) -> str:
    # Every choice spelt out: `up` would otherwise take what its last run recorded.
    up = [csm, "up", str(settings), "--http-port", str(http_port)] + (
        ["--tls", str(tls_port)] if tls_port else ["--no-tls"]
    )
    env = {"CSM_STATE_DIR": str(state_dir), "PATH": UNIT_PATH}
    return "\n".join(
        [
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
        ]
    )


def install(text: str, unit_dir: Path, unit: str) -> Path:
    """Write the unit (only over one this command wrote) and have systemd read it."""
    if "/" in unit or not unit.endswith(".service"):
        raise BadInput(f"unit name {unit!r}: give a file name ending in .service, e.g. {DEFAULT_UNIT}")
    if not unit_dir.is_dir():
        raise HostNotReady(f"{unit_dir} is not a directory: is this a host with systemd? (--unit-dir picks another)")
    path = unit_dir / unit
    if path.exists() and not path.read_text(errors="replace").startswith(MARK):
        raise BadInput(
            f"{path} exists and was not written by `csm install-units`; it is left as it is. "
            "Pick another name with --unit, or move that file away"
        )
    tmp = path.with_name(f".{unit}.tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    os.replace(tmp, path)
    if unit_dir == UNIT_DIR and Path("/run/systemd/system").is_dir():
        subprocess.run(["systemctl", "daemon-reload"], check=False)
    return path


# ---- only root's code ---------------------------------------------------------


def _not_roots(path: Path, st: os.stat_result) -> str | None:
    """Why someone other than root can change what is at path (lstat'ed), if they can."""
    if st.st_uid != 0:
        return f"{path} is owned by uid {st.st_uid}"
    if stat.S_ISLNK(st.st_mode):
        return None  # a link's own mode means nothing; where it points is checked too
    sticky_dir = stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX  # /tmp: nobody replaces root's entries
    if st.st_mode & 0o022 and not sticky_dir:
        return f"{path} is writable by its group or by everyone (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def _trail(path: Path, depth: int = 0) -> dict[Path, None]:
    """Every path the kernel looks at to reach path: each directory from / on the way,
    each symbolic link, and the trail of what the link points at."""
    out = {Path("/"): None}
    current = Path("/")
    for part in Path(os.path.abspath(path)).parts[1:]:
        current = current / part
        out[current] = None
        if current.is_symlink() and depth < 40:
            out.update(_trail(current.parent / os.readlink(current), depth + 1))
            current = Path(os.path.realpath(current))
            out.update(_trail(current, depth + 1))
    return out


def _tree(top: Path):
    yield top
    for parent, dirs, files in os.walk(top):
        for name in dirs + files:
            yield Path(parent, name)


def interpreter(program: Path) -> Path | None:
    """What a script's #! line runs (`/usr/bin/env NAME` looked up on the unit's PATH)."""
    with open(program, "rb") as f:
        first = f.readline(4096)
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode(errors="replace").split()
    if words and Path(words[0]).name == "env" and len(words) > 1:
        found = shutil.which(words[1], path=UNIT_PATH)
        return Path(found) if found else Path(words[1])
    return Path(words[0]) if words else None


def not_roots_code(program: Path, code_dirs: list[Path], path_dirs: list[str]) -> list[str]:
    """Each place from which root running program at boot would take code that someone
    other than root can change: program and its interpreter (and each directory on the way
    to them, up to /), every entry of code_dirs (a venv, the imported csm, the standard
    library) and the path_dirs."""
    places: dict[Path, None] = {}
    for start in [program, interpreter(program), *(Path(d) for d in path_dirs), *code_dirs]:
        if start is not None:
            places.update(_trail(start))
    for top in code_dirs:
        places.update(dict.fromkeys(_tree(top)))
    problems = []
    for place in places:
        try:
            why = _not_roots(place, place.lstat())
        except FileNotFoundError:
            why = f"{place} does not exist" if place == program else None  # a missing PATH entry runs nothing
        if why:
            problems.append(why)
    return problems


def running_code_dirs() -> list[Path]:
    """Where this csm's Python takes code from: its venv, the csm package (an editable
    install's checkout) and the standard library."""
    import csm

    dirs = [Path(sys.prefix), Path(csm.__file__).parent, Path(sysconfig.get_paths()["stdlib"])]
    return [d for d in dict.fromkeys(dirs) if d.is_dir()]


def check_root_only(program: str) -> None:
    """Refuse a unit whose csm, or anything it runs, someone other than root can change."""
    path = Path(program)
    interp = interpreter(path) if path.is_file() else None
    if (
        interp is None
        or os.path.realpath(interp) != os.path.realpath(sys.executable)
        or (Path(sys.prefix) != Path(sys.base_prefix) and Path(interp).parent.parent != Path(sys.prefix))
    ):
        raise BadInput(
            f"{program} is not the csm running now ({sys.executable}); run install-units as the csm "
            "the unit should start, by its path, e.g. /opt/csm/bin/csm install-units"
        )
    problems = not_roots_code(path, running_code_dirs(), UNIT_PATH.split(":"))
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise BadInput(
            f"no unit written: root would run {program} at boot, and someone other than root can "
            f"change what it runs: {shown}. Install csm where only root can write, e.g. "
            "`python3 -m venv /opt/csm && /opt/csm/bin/pip install /path/to/checkout` (not -e), and run "
            "`/opt/csm/bin/csm install-units` (or `chown -R root:` and `chmod -R go-w` the paths named)"
        )
