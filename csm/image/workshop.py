"""What a cached stage (stages.py) and the assembly (assemble.py) use of the build they
run in. build.Build is the one implementation; naming its surface here keeps stages
and assembly from importing build.py, which imports them."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from .shell import Log
from .sources import Downloads


class Workshop(Protocol):
    cache: Path
    contract: dict
    versions: dict
    manifest: dict
    downloads: Downloads
    key: str
    log: Log
    podman: str
    run_args: tuple[str, ...]
    temp_tag: str
    temporary: list[Path]
    jobs: int
    work: Path | None

    def new_temp_dir(self, name: str) -> Path:
        """A fresh directory for a stage in the making, removed if the build fails."""
        ...

    def commit(self, temp: Path, name: str) -> Path:
        """The finished stage, moved to its cached place."""
        ...
