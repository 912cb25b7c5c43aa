"""The image contract: what must hold inside every user's container.

Both recipes (the Nix image, image/default.nix, and the portable one, csm/image/)
must pass the same checks. What they check against is written once: image/contract.json
(user, home, port, ...) and image/versions.json (code-server, node, opencode), read from
image/ of csm's sources (csm/checks/facts.py). Each check is a small function

    check(image: str, podman: Podman) -> str

that returns a short sentence of what it proved, or raises AssertionError with what
it saw. `Podman` sends every podman command through a runner that takes one shell
command line and returns its stdout, raising on a non-zero exit: `machine.succeed`
in a NixOS VM test, `subprocess` on a portable host (`Podman.local()`, which also adds
this host's `podman run` flags).

    for name, check in contract(require_extension=True):
        print(name, check(image, podman))
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence

from csm.checks.commands import Podman, saw
from csm.checks.facts import default_image, facts, opencode_extension_id, versions
from csm.checks.image_serving import healthz, socket_without_login

LABEL = "code-server-multi."  # prefix of the labels both recipes write
Check = Callable[[str, Podman], str]


def _labels(image: str, podman: Podman) -> dict[str, str]:
    info = saw(f"{image} is not an image podman knows", lambda: podman.inspect(image))
    return (info.get("Config") or {}).get("Labels") or info.get("Labels") or {}


def _first_line(text: str) -> str:
    """The first line of a tool's output, past code-server's own log lines."""
    return next(
        (line.strip() for line in text.splitlines() if line.strip() and not re.match(r"\[\d{4}-?", line.strip())), ""
    )


def _version(text: str) -> str:
    match = re.search(r"(?<![\d.])\d+(\.\d+)*", text)
    return match.group(0) if match else ""


# ---------------------------------------------------------------- the checks


def image_config(image: str, podman: Podman) -> str:
    """Entrypoint tini, the contract's user, workdir, port and the environment the plan relies on."""
    c = facts()
    home, port = c["home"], f"{c['port']}/tcp"
    info = saw(f"{image} is not an image podman knows", lambda: podman.inspect(image))
    config = info.get("Config") or {}
    problems = []
    entrypoint = config.get("Entrypoint") or []
    if not entrypoint or not entrypoint[0].endswith("/tini"):
        problems.append(f"entrypoint is {entrypoint}, not tini")
    user = str(config.get("User", ""))
    if user.split(":")[0] not in (str(c["uid"]), c["user"]):
        problems.append(f"user is {user!r}, not {c['uid']}")
    if config.get("WorkingDir") != c["project"]:
        problems.append(f"workdir is {config.get('WorkingDir')!r}, not {c['project']}")
    if port not in (config.get("ExposedPorts") or {}):
        problems.append(f"exposed ports are {sorted(config.get('ExposedPorts') or {})}, not {port}")
    env = dict(item.split("=", 1) for item in config.get("Env") or [] if "=" in item)
    wanted = {"HOME": home, "USER": c["user"], "LANG": "C.UTF-8", "OPENCODE_DISABLE_AUTOUPDATE": "1"}
    for key, value in wanted.items():
        if env.get(key) != value:
            problems.append(f"env {key}={env.get(key)!r}, not {value!r}")
    for key in ("PATH", "SSL_CERT_FILE"):
        if not env.get(key):
            problems.append(f"env {key} is not set")
    if problems:
        raise AssertionError("image config: " + "; ".join(problems))
    return f"entrypoint {' '.join(entrypoint)}, user {user}, workdir {c['project']}, {port}, env ok"


def init_is_tini(image: str, podman: Podman) -> str:
    """PID 1 is an init that reaps zombies."""
    out = saw("reading /proc/1/comm", lambda: podman.sh(image, "cat /proc/1/comm"))
    if out.strip() != "tini":
        raise AssertionError(f"PID 1 is {out.strip()!r}, not tini")
    return "PID 1 is tini"


def code_server_version(image: str, podman: Podman) -> str:
    out = saw("code-server --version", lambda: podman.run(image, "code-server", "--version"))
    line = _first_line(out)
    version = line.split()[0] if line else ""
    if not re.fullmatch(r"\d+\.\d+\.\d+", version):
        raise AssertionError(f"code-server --version printed {out.strip()!r}")
    _same_as_pinned("code-server", version, image, podman)
    return f"code-server {line}"


def opencode_version(image: str, podman: Podman) -> str:
    out = saw("opencode --version", lambda: podman.sh(image, 'HOME="$(mktemp -d)" opencode --version'))
    version = _first_line(out)
    if not re.fullmatch(r"v?\d+\.\d+\.\d+\S*", version):
        raise AssertionError(f"opencode --version printed {out.strip()!r}")
    _same_as_pinned("opencode", version.lstrip("v"), image, podman)
    return f"opencode {version}"


def _same_as_pinned(name: str, version: str, image: str, podman: Podman) -> None:
    """`version` is what image/versions.json pins, and what the image's label says."""
    pinned = versions()[name]
    if version != pinned:
        raise AssertionError(f"{name} is {version}, but image/versions.json pins {pinned}")
    label = _labels(image, podman).get(LABEL + name)
    if label and label != version:
        raise AssertionError(f"{name} is {version}, but the image says it ships {label}")


def extension(image: str, podman: Podman, *, required: bool = True) -> str:
    """sst-dev.opencode is listed by code-server itself.

    Required for the Nix image. For a portable image it is required only if the image
    says it was built with it (a VSIX in image/extensions/); otherwise its absence is
    reported, never papered over."""
    out = saw(
        "code-server --list-extensions",
        lambda: podman.run(
            image, "code-server", "--list-extensions", "--show-versions", "--extensions-dir", facts()["extensionsDir"]
        ),
    )
    listed = [line.strip() for line in out.splitlines() if "@" in line]
    found = [entry for entry in listed if entry.split("@")[0].lower() == opencode_extension_id()]
    if found:
        return f"{found[0]} installed in {facts()['extensionsDir']}"
    baked = _labels(image, podman).get(LABEL + "extensions", "")
    promised = opencode_extension_id() in [e.split("@")[0].lower() for e in baked.split(",") if e]
    if required or promised:
        why = "required" if required else f"the image says it ships {baked!r}"
        raise AssertionError(
            f"{opencode_extension_id()} is not installed ({why}); --list-extensions printed {listed or 'nothing'}"
        )
    return (
        f"{opencode_extension_id()} absent (optional here: this image was built without its VSIX; "
        "see docs/image.md to add it)"
    )


def session_extension(image: str, podman: Podman) -> str:
    """The project's own extension ("Log out" in the workbench) is listed by code-server,
    in both images: it is built from the checkout, never downloaded."""
    from csm.image.extensions import SESSION_ID

    out = saw(
        "code-server --list-extensions",
        lambda: podman.run(image, "code-server", "--list-extensions", "--extensions-dir", facts()["extensionsDir"]),
    )
    if SESSION_ID not in [line.strip().lower() for line in out.splitlines()]:
        raise AssertionError(f"{SESSION_ID} is not installed; --list-extensions printed {out.strip()!r}")
    return f"{SESSION_ID} installed in {facts()['extensionsDir']}"


def tools(image: str, podman: Podman) -> str:
    """python3, node, npm, git, rg (and curl, less, the CA bundle) run for the default user."""
    names = ("python3", "node", "npm", "git", "rg", "curl", "less")
    script = "; ".join(f'printf "%s\\t%s\\n" {n} "$({n} --version 2>&1 | head -n1 || true)"' for n in names)
    script += '; printf "cacert\\t%s\\n" "$(test -s "$SSL_CERT_FILE" && echo "$SSL_CERT_FILE")"'
    out = saw("running the tools", lambda: podman.sh(image, script))
    found = dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)
    missing = [n for n in names if not _version(found.get(n, "")) or "not found" in found.get(n, "")]
    if not found.get("cacert", "").strip():
        missing.append("the CA bundle ($SSL_CERT_FILE)")
    if missing:
        raise AssertionError(f"missing or broken: {', '.join(missing)} (saw {found})")
    node_major, pinned = _version(found["node"]).split(".")[0], versions()["node"].split(".")[0]
    if node_major != pinned:
        raise AssertionError(f"node is {found['node'].strip()}, but image/versions.json pins node {pinned}")
    return ", ".join(f"{n} {_version(found[n])}" for n in names) + f", CA bundle {found['cacert'].strip()}"


def default_user(image: str, podman: Podman) -> str:
    out = saw("id", lambda: podman.sh(image, 'id -u; id -g; echo "$HOME"; cat /etc/passwd'))
    lines = out.splitlines()
    if len(lines) < 3:
        raise AssertionError(f"expected uid, gid, HOME; saw {out!r}")
    uid, gid, home = lines[0].strip(), lines[1].strip(), lines[2].strip()
    c = facts()
    entry = next((line for line in lines[3:] if line.split(":")[2:3] == [str(c["uid"])]), None)
    problems = []
    if uid != str(c["uid"]):
        problems.append(f"uid {uid}")
    if gid != str(c["gid"]):
        problems.append(f"gid {gid}")
    if home != c["home"]:
        problems.append(f"HOME {home}")
    if not entry or entry.split(":")[0] != c["user"] or entry.split(":")[5] != c["home"]:
        problems.append(f"/etc/passwd entry for {c['uid']}: {entry!r}")
    if problems:
        raise AssertionError("default user: " + ", ".join(problems))
    return f"default user {c['user']} {uid}:{gid}, HOME {home}"


def no_privilege_escalation(image: str, podman: Podman) -> str:
    """No sudo, and no setuid/setgid file anywhere in the image (searched as root)."""
    script = (
        "for c in sudo doas pkexec; do command -v $c; done; "
        "find / -xdev \\( -perm -4000 -o -perm -2000 \\) -type f 2>/dev/null; true"
    )
    out = saw("searching for setuid files", lambda: podman.sh(image, script, options=("--user", "0")))
    found = [line for line in out.splitlines() if line.strip()]
    if found:
        raise AssertionError(f"privilege escalation possible via: {found}")
    return "no sudo, no setuid or setgid files"


def contract(require_extension: bool) -> list[tuple[str, Check]]:
    """The checks, in order. `require_extension`: True for the Nix image."""
    return [
        ("image config", image_config),
        ("init is tini", init_is_tini),
        ("code-server --version", code_server_version),
        ("opencode --version", opencode_version),
        ("extension sst-dev.opencode", functools.partial(extension, required=require_extension)),
        ("extension code-server-multi.session", session_extension),
        ("python3 node npm git rg", tools),
        ("default user", default_user),
        ("no sudo, no setuid", no_privilege_escalation),
        ("code-server /healthz", healthz),
        ("code-server on a socket, login off", socket_without_login),
    ]


def run_contract(
    image: str | None = None, podman: Podman | None = None, require_extension: bool = False
) -> list[tuple[str, bool, str]]:
    """Runs every check; returns (name, passed, what it proved or saw)."""
    podman = podman or Podman.local()
    image = image or default_image()
    results = []
    for name, check in contract(require_extension):
        try:
            results.append((name, True, check(image, podman)))
        except AssertionError as e:
            results.append((name, False, str(e)))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m csm.checks.image", description="Run the image contract against an image."
    )
    parser.add_argument("image", nargs="?", help="default: the name in image/contract.json")
    parser.add_argument(
        "--require-extension", action="store_true", help=f"fail if {opencode_extension_id()} is absent (the Nix image)"
    )
    args = parser.parse_args(argv)
    failed = 0
    for name, ok, text in run_contract(args.image, require_extension=args.require_extension):
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {text}")
        failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
