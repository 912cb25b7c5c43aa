"""What every plan must make true, asserted on meaning (shared by the example and
property tests). Sizes are parsed here independently of plan.nix."""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import subprocess
from pathlib import Path

DEFAULTS = json.loads(
    subprocess.run(
        [
            "nix-instantiate",
            "--eval",
            "--strict",
            "--json",
            str(Path(__file__).resolve().parents[2] / "modules/code-server-multi/defaults.nix"),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
)
UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
HOST_ACCOUNTS_END = 65536  # a requirement, not a copy: host accounts (system, normal, nobody, DynamicUser) live below
HOME = "/home/coder"


def size_bytes(text) -> int:
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kmgt]?)(?:i?b)?", str(text).lower())
    assert m, f"unparseable size {text!r}"
    return int(float(m.group(1)) * UNITS[m.group(2)])


def options_of(container) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for opt in container.extraOptions:
        key, _, value = opt.partition("=")
        out.setdefault(key, []).append(value)
    return out


def assert_plan_meets_invariants(plan: dict, settings: dict) -> None:
    users = plan.users
    assert sorted(users) == sorted(settings["users"])
    sockets = [u.socket for u in users.values()]
    assert len(set(sockets)) == len(sockets), f"shared sockets {sockets}"
    gate = plan.gate
    ranges = sorted((u.ids.base, u.ids.base + u.ids.size) for u in users.values())
    for (_, end), (start, _) in itertools.pairwise(ranges):
        assert end <= start, f"uid ranges overlap: {ranges}"
    for name, u in users.items():
        s = settings["users"][name]
        c = u.container
        opts = options_of(c)
        # Reachable only through nginx: no port at all, a socket only root and nginx's
        # group reach (the guard directory), created by the container's user inside it.
        assert c.ports == [], c.ports
        assert not any(o.startswith(("--publish", "-p", "--network=host")) for o in c.extraOptions)
        # nginx and root connect to root's link in the guard directory, never to the
        # user's own directory (csm/sockets.py).
        guard, inner = {d.path: d for d in u.directories}, u.socketSource.rsplit("/", 1)[0]
        outer = inner.rsplit("/", 1)[0]
        links = {d.path: d for d in plan.directories}[u.socket.rsplit("/", 1)[0]]
        assert (links.uid, links.gid, links.mode) == (0, gate.proxyGroup, "0710")
        assert len(u.socket.encode()) <= 107, "a socket's path must fit in sun_path"
        assert (guard[outer].uid, guard[outer].gid, guard[outer].mode) == (0, gate.proxyGroup, "0710")
        assert guard[inner].uid == u.ids.hostUid and guard[inner].mode == "0711"
        assert f"{inner}:{c.socket.rsplit('/', 1)[0]}" in c.volumes
        # Limits, no swap escape, hardening.
        given = {**DEFAULTS["user"], **s}  # defaults.nix owns the defaults
        hard, soft = size_bytes(given["memoryLimit"]), size_bytes(given["memorySoftLimit"])
        assert opts["--memory"] == [str(hard)] and opts["--memory-swap"] == [str(hard)]
        assert opts["--memory-reservation"] == [str(soft)] and soft <= hard
        assert float(opts["--cpus"][0]) == float(given["cpuLimit"])
        assert opts["--pids-limit"] == [str(given["pidsLimit"])]
        assert opts["--cap-drop"] == ["all"]
        assert opts["--security-opt"] == ["no-new-privileges"]
        # A network of its own, isolated from every other user's; restarted when it dies.
        assert opts["--network"] == [u.network.name] and u.network.name == c.name
        assert "--opt=isolate=true" in u.network.createOptions
        assert c.restart == "always"
        # Its own uid range, above every host account; never host root.
        base, size = u.ids.base, u.ids.size
        assert base >= 16 * HOST_ACCOUNTS_END and size == 65536
        assert opts["--uidmap"] == [f"0:{base}:{size}"] and opts["--gidmap"] == [f"0:{base}:{size}"]
        assert c.user == "1000:1000" and u.ids.hostUid == base + 1000
        owned = {d.path: d for d in u.directories}
        user_dir = f"{plan.workspaceBase}/{name}"
        for sub in ("workspace", "config"):
            d = owned[f"{user_dir}/{sub}"]
            assert (d.uid, d.gid, d.mode) == (base + 1000, base + 1000, "0700"), d
        # A new home starts with the VS Code settings, owned by the user, in their home.
        (seed,) = u.seedFiles
        assert seed.path.startswith(f"{user_dir}/config/") and seed.path.endswith("/User/settings.json")
        assert (seed.uid, seed.gid, seed.mode) == (base + 1000, base + 1000, "0600")
        assert json.loads(seed.content) == settings.get("vscodeSettings", DEFAULTS["vscodeSettings"])
        parent = seed.path.rsplit("/", 1)[0]
        assert owned[parent].uid == base + 1000
        data_dir = c.cmd[c.cmd.index("--user-data-dir") + 1]
        assert seed.path == f"{user_dir}/config/{data_dir.removeprefix(HOME + '/')}/User/settings.json", data_dir
        mounts = {v.split(":")[1]: v.split(":")[0] for v in c.volumes}
        assert mounts[HOME] == f"{user_dir}/config" and mounts[f"{HOME}/project"] == f"{user_dir}/workspace"
        # The password file is the gate's alone: the container gets neither it nor its hash.
        secret_file = s.get("hashedPasswordFile") or s.get("passwordFile")
        assert (u.password.file, u.password.hashed) == (secret_file, bool(s.get("hashedPasswordFile")))
        assert c.environmentFiles == s.get("environmentFiles", [])
        assert json.dumps(secret_file) not in json.dumps(dataclasses.asdict(c))
        assert not any("PASSWORD" in k or "KEY" in k for k in c.environment), c.environment
        # code-server: its own login off (the gate is the login), on the socket, quiet,
        # trust off, extensions outside the home, health over the socket.
        cmd = c.cmd
        assert cmd[0] == "code-server" and cmd[cmd.index("--auth") + 1] == "none"
        assert cmd[cmd.index("--socket") + 1] == c.socket and "--bind-addr" not in cmd
        for flag in ("--disable-telemetry", "--disable-update-check", "--disable-workspace-trust"):
            assert flag in cmd
        ext = cmd[cmd.index("--extensions-dir") + 1]
        assert not any(ext == m or ext.startswith(m + "/") for m in mounts), f"{ext} is hidden by a mount"
        assert c.healthCheck[-1] == f"http://localhost{c.healthPath}" and c.socket in c.healthCheck
        assert json.loads(opts["--health-cmd"][0]) == c.healthCheck
        # nginx: one server at <name>.<domain>; every location that reaches code-server
        # asks the gate first; WebSocket, origin-safe headers, big uploads, hour-long quiet
        # terminals only on upgrades, login rate limit (an hour of quiet and a 100 MB upload
        # are what people need: lower bounds, not copies of plan.nix's values).
        n = u.nginx
        assert n["serverName"] == f"{name}.{plan.domain}" == u.hostname
        upstream = f"http://unix:{u.socket}:"
        to_code_server = {where: loc for where, loc in n["locations"].items() if loc["proxyPass"] == upstream}
        assert set(to_code_server) == {"/", "@csm_websocket"}, to_code_server
        for loc in to_code_server.values():
            cfg = "\n".join(loc["config"])
            assert f"auth_request {gate.paths.auth};" in cfg and "error_page 401 = @csm_login;" in cfg
            assert "proxy_set_header Upgrade $http_upgrade;" in cfg
            assert "proxy_set_header X-Forwarded-Host $http_host;" in cfg
            assert "proxy_http_version 1.1;" in cfg
        assert "proxy_read_timeout" not in "\n".join(n["locations"]["/"]["config"])
        timeout = re.search(r"proxy_read_timeout (\d+)s;", "\n".join(n["locations"]["@csm_websocket"]["config"]))
        assert timeout and int(timeout.group(1)) >= 3600
        body = re.search(r"client_max_body_size (\d+[kmg]);", "\n".join(n["config"]))
        assert body and size_bytes(body.group(1)) >= 100 * 1024**2
        # The gate hears which user's host this is from nginx, never from the client.
        for where, loc in n["locations"].items():
            if loc["proxyPass"] == "http://csm_gate":
                assert f"proxy_set_header X-CSM-User {name};" in loc["config"], where
        assert "internal;" in n["locations"][f"= {gate.paths.auth}"]["config"]
        login = n["locations"][f"= {gate.paths.login}"]
        assert login["proxyPass"] == "http://csm_gate"
        zone = re.search(r"limit_req zone=(\w+)", "\n".join(login["config"])).group(1)
        (zone_line,) = [line for line in plan.nginx["httpConfig"] if f"zone={zone}:" in line]
        # Only password submissions are counted: the key is empty for anything but POST.
        key = re.match(r"limit_req_zone \$(\w+) ", zone_line).group(1)
        assert f"map $request_method ${key} {{ POST $binary_remote_addr; default ''; }}" in plan.nginx["httpConfig"]
        # A class behind one address logs in at once: at least 20 submissions pass.
        assert int(re.search(r"burst=(\d+)", "\n".join(login["config"])).group(1)) + 1 >= 20
        # A limited person gets a page saying what to do, from nginx, not the container.
        limited = re.search(r"error_page 429 (@\w+);", "\n".join(login["config"])).group(1)
        page = n["locations"][limited]
        assert page["proxyPass"] is None and "Wait one minute" in "".join(page["config"])
        assert re.fullmatch(r'return 429 "[^"$]*";', page["config"][-1])
    # Unknown names: the landing page with 404, never an upstream.
    default = plan.nginx["defaultServer"]
    assert default["locations"]["/"] == ["return 404;"]
    assert "proxy_pass" not in json.dumps(default)
    assert "<html" in default["landingHtml"]
    assert "proxy_pass" not in "".join(plan.nginx["httpConfig"])
    # The gate listens where nginx's upstream says; its socket and the control socket
    # sit in directories of their own accounts.
    assert f"upstream csm_gate {{ server unix:{gate.socket}; keepalive 64; }}" in plan.nginx["httpConfig"]
    dirs = {d.path: d for d in plan.directories}
    assert (dirs[gate.directory].uid, dirs[gate.directory].gid) == (gate.user, gate.proxyGroup)
    assert (dirs[gate.control.directory].uid, dirs[gate.control.directory].gid) == (0, gate.user)
    assert dirs[gate.stateDir].mode == "0700"
    # nginx accepts every host name the plan makes (its server name hash).
    longest = max(len(f"*.{plan.domain}"), *(len(u.hostname) for u in users.values()))
    assert plan.nginx["serverNamesHashBucketSize"] >= 16 + 8 * ((longest + 2 + 7) // 8)
