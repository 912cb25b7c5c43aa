"""Benchmarks of the portable stack (`make bench`), each figure beside its baseline
in the same run; see docs/performance.md. Not part of the runtime: they drive
Chromium through csm.testing, and package.nix leaves them out.

    python -m csm.bench.stack    cold start, a container against a bare process, memory
    python -m csm.bench.idle     idle stop and wake
    python -m csm.bench.memory   memory of a running idle user
    python -m csm.bench.gate     the gate in front: login, requests, WebSocket, a flood
    python -m csm.bench.disk     the per-user disk
"""
