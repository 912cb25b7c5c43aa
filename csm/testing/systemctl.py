"""A stand-in for systemd's `systemctl`, for testing the NixOS admin verbs on a host
without systemd: a script put first on PATH that records every call and keeps each
unit's state in a file (what `is-active`, `show -p MainPID` and `NRestarts`, `stop`, `start` and
`restart`, `try-restart` report and change). It stands in for systemd, never for csm.

    sd = SystemctlStandIn(tmp_path)
    sd.set("nginx.service", "active", pid=4242)
    subprocess.run([... "csm", "status", "--plan", plan], env=sd.env())
    sd.calls()   # ["is-active nginx.service", ...]
"""

from __future__ import annotations

import os
from pathlib import Path

SCRIPT = r"""#!/bin/bash
state=${SYSTEMCTL_STATE:?}
unit=${@: -1}
line="$*"
if [ -n "${SYSTEMCTL_WATCH:-}" ]; then line="$line | $(cat "$SYSTEMCTL_WATCH" 2>/dev/null)"; fi
echo "$line" >> "$state/calls"
current=$(cat "$state/$unit" 2>/dev/null || echo inactive)
case "$1" in
  is-active) echo "$current"; [ "$current" = active ];;
  show) case "$2" in
          --property=NRestarts) cat "$state/$unit.restarts" 2>/dev/null || echo 0;;
          *) if [ "$current" = active ]; then cat "$state/$unit.pid" 2>/dev/null || echo 0; else echo 0; fi;;
        esac;;
  stop) echo inactive > "$state/$unit";;
  start|restart|try-restart)
    if [ "$1" = try-restart ] && [ "$current" != active ]; then exit 0; fi
    if [ -e "$state/$unit.fails" ]; then
      echo "Job for $unit failed because the control process exited with error code." >&2; exit 1
    fi
    echo active > "$state/$unit";;
  *) echo "systemctl stand-in: unexpected call: $*" >&2; exit 1;;
esac
"""


class SystemctlStandIn:
    def __init__(self, base: Path):
        self.bin, self.state = base / "systemctl-bin", base / "systemctl-state"
        self.bin.mkdir(parents=True)
        self.state.mkdir()
        script = self.bin / "systemctl"
        script.write_text(SCRIPT)
        script.chmod(0o755)

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "PATH": f"{self.bin}:{os.environ['PATH']}", "SYSTEMCTL_STATE": str(self.state), **extra}

    def set(
        self, unit: str, state: str, pid: int | None = None, fails: bool = False, restarts: int | None = None
    ) -> None:
        (self.state / unit).write_text(state + "\n")
        if pid:
            (self.state / f"{unit}.pid").write_text(f"{pid}\n")
        if restarts is not None:  # systemd's NRestarts
            (self.state / f"{unit}.restarts").write_text(f"{restarts}\n")
        if fails:
            (self.state / f"{unit}.fails").touch()

    def state_of(self, unit: str) -> str:
        path = self.state / unit
        return path.read_text().strip() if path.exists() else "inactive"

    def calls(self) -> list[str]:
        path = self.state / "calls"
        return path.read_text().splitlines() if path.exists() else []
