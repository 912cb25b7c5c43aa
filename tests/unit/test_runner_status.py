"""How status numbers are read and shown."""
from __future__ import annotations

import time

import pytest

from csm import cli
from csm.runner.stack import _parse_bytes


@pytest.mark.parametrize("text, expected", [
    ("708KiB / 1GiB", 708 * 1024),          # podman's {{.MemUsageBytes}}
    ("123.5MiB / 3GiB", int(123.5 * 2**20)),
    ("1.5GiB / 3GiB", 3 * 2**29),
    ("725kB / 1.074GB", 725_000),            # {{.MemUsage}}: decimal units
    ("0B / 0B", 0),
])
def test_memory_use_from_podman_stats(text, expected):
    assert _parse_bytes(text) == expected


def test_sizes_and_times_for_people():
    assert cli._size(None) == "-"
    assert cli._size(59 * 2**20) == "59 MiB"
    assert cli._size(3 * 2**30) == "3.0 GiB"
    assert cli._when(None) == "none since start"
    assert cli._when(time.time() - 5).endswith("(5 s ago)")
    assert cli._when(time.time() - 600).endswith("(10 min ago)")
