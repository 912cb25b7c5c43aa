"""`csm gate serve`: the gate on the plan's socket, until SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from ..plan import PlanError, load_plan
from .core import Gate
from .server import Server
from .sessions import StoreError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="csm gate", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="answer nginx on the plan's gate socket")
    s.add_argument("--plan", required=True, metavar="PLAN.json")
    s.add_argument(
        "--credentials",
        required=True,
        metavar="DIR",
        help="one file per user holding the argon2 hash (or plain password) of the plan",
    )
    args = p.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if os.geteuid() == 0:
        print(
            "csm gate: refusing to run as root; it faces the network. Run it as the plan's gate.user "
            "(the NixOS unit and `csm up` do)",
            file=sys.stderr,
        )
        return 2
    try:
        plan = load_plan(args.plan)
        gate = Gate(plan, Path(args.credentials))
    except (OSError, ValueError, PlanError, StoreError) as e:
        print(f"csm gate: cannot start: {e}", file=sys.stderr)
        return 2
    where = plan.gate.socket
    Path(where).unlink(missing_ok=True)
    try:
        server = Server(where, gate)
    except OSError as e:
        print(f"csm gate: cannot listen on {where} ({e}); its directory must be the gate account's", file=sys.stderr)
        return 3
    os.chmod(where, 0o666)  # the directory (gate:<proxy group> 0750) decides who gets here
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    logging.getLogger("csm.gate").info("gate listening on %s for %s", where, ", ".join(sorted(plan.users)))
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
