"""Idle people cost nothing: a user's container stops when nobody uses it and starts
again on their next visit.

One implementation for both paths: the decision (decision.py), the signals it reads
(signals.py), who was stopped for being idle (markers.py), the waker behind nginx
(waker.py) and the service running both (service.py). Only starting and stopping a
container differs: the runner's backend does it (csm/runner/backends.py: podman for the
portable runner, the systemd units on NixOS).
Every setting comes from the plan's `idle` section and each user's `idle`.
"""
