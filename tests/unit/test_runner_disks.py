"""What csm/runner/disks.py decides without mounting anything (the disks themselves:
tests/e2e/test_disk_quota.py and the tier-2 preStart test)."""

from __future__ import annotations

import os

from csm import plan as planlib
from csm.runner import disks


def plan_of(tmp_path, **settings) -> dict:
    (tmp_path / "ws").mkdir(exist_ok=True)
    return planlib.from_settings(
        {
            "domain": "code.test",
            "workspaceBase": str(tmp_path / "ws"),
            "runtimeDir": str(tmp_path / "run"),
            "users": {u: {"passwordFile": "/p"} for u in ("ada", "bo")},
            **settings,
        }
    )


def free(tmp_path) -> int:
    st = os.statvfs(tmp_path)
    return st.f_bavail * st.f_frsize


def test_quotas_beyond_the_hosts_free_space_are_named(tmp_path):
    gib = free(tmp_path) // 2**30
    warning = disks.overcommit(plan_of(tmp_path, diskQuota=f"{gib // 2 + 2}G"))
    assert warning and "the users' disks may grow to" in warning and "Lower diskQuota" in warning, warning
    assert disks.overcommit(plan_of(tmp_path, diskQuota=f"{max(1, gib // 4)}G")) is None
    assert disks.overcommit(plan_of(tmp_path, diskQuota=None)) is None


def test_a_quota_below_what_a_directory_holds_is_refused_before_its_disk_exists(tmp_path):
    plan = plan_of(tmp_path, diskQuota="1G")
    ada = plan.users["ada"]
    work = tmp_path / "ws" / "ada" / "workspace"
    work.mkdir(parents=True)
    with open(work / "big", "wb") as f:
        f.write(os.urandom(2**20) * 1100)  # 1.1 GiB of blocks, more than a 1G disk offers
    why = disks.refusal(ada)
    assert why and why.startswith("users.ada.diskQuota = 1.0G is less than the 1.1G ada stores"), why
    assert disks.refusal(plan.users["bo"]) is None
