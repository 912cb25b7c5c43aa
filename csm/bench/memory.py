"""The memory of a running idle user, and what each memory lever changes, side by side
in one run.

    python -m csm.bench.memory [--idle SECONDS] [--json FILE]      (part of `make bench`)

One stack, one user per variant, each with the same small project in its workspace
(a git repository with a node_modules folder). Each user logs in at the gate with Chromium, opens
one terminal and leaves the tab open; after `--idle` seconds each container is read:
per process RSS/PSS from /proc, and the memory cgroup (what `podman stats` shows).
A variant differs from the baseline by one lever only: VS Code settings written into
the user's settings before the first login, or environment given to the container.

Everything started here is stopped here.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from csm import plan as planlib
from csm.bench.common import podman, say, write_json
from csm.testing import browser as chromium
from csm.testing import memory
from csm.testing.stacks import IMAGE, ThrowawayStack, require_image

# variant -> (VS Code settings added to the plan's, container environment). None of
# these saved memory beyond the noise (docs/performance.md); they stay here so the
# next image can be measured against them in the same way.
VARIANTS: dict[str, tuple[dict, dict]] = {
    "baseline": ({}, {}),
    # Reaches code-server's server and the terminal's shell (the person's own node
    # programs) only: VS Code removes NODE_OPTIONS from the extension host, pty host
    # and file watcher, which take the server's own command-line flags instead.
    "heapcap": ({}, {"NODE_OPTIONS": "--max-old-space-size=1024"}),
    "watcher": (
        {
            "files.watcherExclude": {
                "**/node_modules/**": True,
                "**/.git/objects/**": True,
                "**/.venv/**": True,
                "**/__pycache__/**": True,
            }
        },
        {},
    ),
    "tscap": ({"typescript.tsserver.maxTsServerMemory": 1024}, {}),
    "quiet": (
        {
            "extensions.autoUpdate": False,
            "extensions.autoCheckUpdates": False,
            "telemetry.telemetryLevel": "off",
            "workbench.enableExperiments": False,
            "typescript.disableAutomaticTypeAcquisition": True,
        },
        {},
    ),
}
SAMPLES, SAMPLE_GAP_S = 3, 10


def user_name(variant: str) -> str:
    return "bnm" + re.sub(r"[^a-z0-9]", "", variant)[:10]


def prepare_project(stack: ThrowawayStack, user: str, node_modules: Path) -> None:
    """The same small project for every user: a git repository with a node_modules."""
    ws = stack.workspace(user)
    (ws / "README.md").write_text("# a project\n")
    (ws / "index.js").write_text("console.log('hello')\n")
    shutil.copytree(node_modules, ws / "node_modules", symlinks=True)
    for argv in (
        ["init", "-q"],
        ["add", "README.md", "index.js"],
        ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "start"],
    ):
        subprocess.run(["git", "-c", "safe.directory=*", "-C", str(ws), *argv], check=True)
    ids = stack.plan.users[user].ids
    subprocess.run(["chown", "-R", f"{ids['hostUid']}:{ids['hostGid']}", str(ws)], check=True)


def write_settings(stack: ThrowawayStack, user: str, extra: dict) -> None:
    """The seeded settings plus the variant's, before code-server reads them."""
    seed = next(f for f in stack.plan.users[user].seedFiles if f.path.endswith("/settings.json"))
    Path(seed.path).write_text(json.dumps({**json.loads(seed.content), **extra}))


def open_workbench_and_terminal(browser, url: str, password: str):
    from playwright.sync_api import expect

    from csm.bench.common import log_in_until_rendered
    from csm.testing.workbench import run_command

    page = browser.new_context(viewport=chromium.VIEWPORT).new_page()
    log_in_until_rendered(page, url, password)
    run_command(page, "workbench.action.terminal.new", "Terminal: Create New Terminal")
    expect(page.get_by_role("textbox", name=re.compile(r"^Terminal \d+"))).to_be_visible(timeout=60_000)
    return page


def measure(stack: ThrowawayStack, users: dict[str, str], opened: dict[str, float], idle_s: float) -> dict[str, dict]:
    """Each variant read SAMPLES times, the first `idle_s` after its own terminal opened
    (so every variant idles as long); the median profile by cgroup figure is kept."""
    due = sorted((opened[v] + idle_s + i * SAMPLE_GAP_S, v) for v in users for i in range(SAMPLES))
    samples: dict[str, list[dict]] = {v: [] for v in users}
    for at, variant in due:
        time.sleep(max(0.0, at - time.monotonic()))
        samples[variant].append(memory.container_profile(stack.container(users[variant])))
    out = {}
    for variant, profiles in samples.items():
        out[variant] = sorted(profiles, key=lambda p: p["cgroup_mib"])[len(profiles) // 2]
        out[variant]["cgroup_mib_samples"] = [p["cgroup_mib"] for p in profiles]
    return out


def activated_extensions(stack: ThrowawayStack, user: str) -> list[str]:
    """Extensions the extension host activated (from its log in the user's home)."""
    logs = stack.home(user) / ".local/share/code-server/logs"
    found = []
    for log in sorted(logs.glob("*/exthost*/remoteexthost.log")):
        found += re.findall(
            r"ExtensionService#_doActivateExtension (\S+?),? .*?activationEvent: '([^']*)'", log.read_text()
        )
    return [f"{ext} ({event})" for ext, event in found]


def run(variants: list[str], idle_s: float) -> dict:
    from playwright.sync_api import sync_playwright

    require_image()
    users = {v: user_name(v) for v in variants}
    env_dir = None
    say(f"a stack of {len(users)} users, one per variant: {', '.join(variants)}")
    stack = ThrowawayStack(list(users.values()), prefix="csm-bench-mem-")
    mount = None
    try:
        env_dir = stack.base / "env"
        env_dir.mkdir()
        mount = Path(podman("image", "mount", IMAGE).strip())
        node_modules = mount / "usr/local/lib/node_modules/npm/node_modules"
        for variant, user in users.items():
            settings, env = VARIANTS[variant]
            prepare_project(stack, user, node_modules)
            write_settings(stack, user, settings)
            if env:
                f = env_dir / f"{user}.env"
                f.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
                stack.settings["users"][user]["environmentFiles"] = [str(f)]
        stack.plan = stack.stack.plan = planlib.from_settings(stack.settings)
        stack.stack.up()  # recreates the containers given an environment
        for user in users.values():  # and every code-server starts after its settings were written
            podman("restart", "--time=10", stack.container(user))
        stack.stack.wait_healthy(list(users.values()))
        opened = {}
        with sync_playwright() as p:
            browser = chromium.launch(p)
            try:
                for variant, user in users.items():
                    say(f"{variant}: workbench and a terminal in Chromium")
                    open_workbench_and_terminal(browser, stack.url(user), stack.password(user))
                    opened[variant] = time.monotonic()
                say(f"each left idle for {idle_s:.0f} s, tabs open")
                profiles = measure(stack, users, opened, idle_s)
                for variant, user in users.items():
                    profiles[variant]["activated"] = activated_extensions(stack, user)
            finally:
                browser.close()
        return {"idle_s": idle_s, "profiles": profiles}
    finally:
        if mount:
            podman("image", "unmount", IMAGE)
        stack.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m csm.bench.memory", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--idle", type=float, default=60, help="seconds to leave the tabs idle (default 60)")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    r = run(variants, args.idle)
    print(memory.table(r["profiles"]))
    base = r["profiles"].get("baseline")
    if base:
        for v, prof in r["profiles"].items():
            print(
                f"{v:<10} cgroup {prof['cgroup_mib']:6.0f} MiB  "
                f"ratio to baseline {prof['cgroup_mib'] / base['cgroup_mib']:.2f}"
                f"  samples {', '.join(f'{x:.0f}' for x in prof['cgroup_mib_samples'])}"
            )
    write_json(args.json, r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
