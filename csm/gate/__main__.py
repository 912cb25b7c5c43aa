"""`csm gate serve`: the gate on the plan's socket, until SIGTERM; with --kube, on a
cluster: on kube.json's port, waking and stopping users through the Kubernetes API."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from ..plan import PlanError, load_plan
from . import kube
from .control import ControlError
from .core import Gate
from .server import Server, TCPServer
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
    s.add_argument("--kube", metavar="KUBE.json", help="serve a cluster (kube.json of `csm kube render`)")
    s.add_argument("--api", metavar="URL", help="the Kubernetes API (default: the pod's KUBERNETES_SERVICE_HOST)")
    s.add_argument("--service-account", metavar="DIR", type=Path, default=kube.SERVICE_ACCOUNT)
    s.add_argument("--host", default="0.0.0.0", help="with --kube: the address to listen on (default: all)")
    args = p.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if os.geteuid() == 0:
        print(
            "csm gate: refusing to run as root; it faces the network. Run it as the plan's gate.user "
            "(the NixOS unit and `csm up` do)",
            file=sys.stderr,
        )
        return 2
    control, port = None, 0
    try:
        plan = load_plan(args.plan)
        if args.kube:
            facts = kube.load_facts(args.kube, plan)
            port = facts["port"]
            control = kube.KubeControl(plan, facts, kube.Api(args.api or kube.in_cluster_url(), args.service_account))
        gate = Gate(plan, Path(args.credentials), control_answer=control.ask if control else None)
    except (OSError, ValueError, PlanError, StoreError, ControlError) as e:
        print(f"csm gate: cannot start: {e}", file=sys.stderr)
        return 2
    where = f"{args.host} port {port}" if control else plan.gate.socket
    try:
        server = TCPServer(port, gate, args.host) if control else _unix_server(plan.gate.socket, gate)
    except OSError as e:
        why = "another process holds the port" if control else "its directory must be the gate account's"
        print(f"csm gate: cannot listen on {where} ({e}); {why}", file=sys.stderr)
        return 3
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    if control:
        threading.Thread(target=control.watch_idle, args=(done,), daemon=True).start()
    logging.getLogger("csm.gate").info("gate listening on %s for %s", where, ", ".join(sorted(plan.users)))
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    server.shutdown()
    return 0


def _unix_server(where: str, gate: Gate) -> Server:
    Path(where).unlink(missing_ok=True)
    server = Server(where, gate)
    os.chmod(where, 0o666)  # the directory (gate:<proxy group> 0750) decides who gets here
    return server


if __name__ == "__main__":
    sys.exit(main())
