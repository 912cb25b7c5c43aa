"""Backups on a cluster (modules/code-server-multi/kube-backup.nix, kube-schedule.nix):
backup.schedule in systemd's form as cron, or refused with what to write; a CronJob per
user into one backups claim, in csm backup's archive format; nothing when backups are
off; and the restore pod docs/kubernetes.md shows valid and hardened like the rest.
(tests/e2e/test_kube_backup_image.py runs both against the real image.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from test_kube_policy import assert_backup_policy, assert_restricted_pod
from test_kube_schema import core_problems

from csm import kube
from csm import plan as planlib
from csm.runner import backup as hostbackup

ROOT = Path(__file__).resolve().parents[2]
SCHEDULE_NIX = ROOT / "modules/code-server-multi/kube-schedule.nix"
DOCS = ROOT / "docs/kubernetes.md"
TEAM = {
    "domain": "class.example.org",
    "users": {"ada": {"passwordFile": "/s/ada"}, "bo": {"passwordFile": "/s/bo", "diskQuota": "5G"}},
    "backup": {"enable": True, "schedule": "*-*-* 03:00:00", "keep": 3},
}


def cron(schedule: str) -> dict:
    return planlib.evaluate("{ file, schedule }: import (/. + file) schedule", file=SCHEDULE_NIX, schedule=schedule)


def render(settings: dict, tmp_path: Path) -> dict:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(settings))
    return kube.render(path)


@pytest.mark.parametrize(
    "systemd, expected, zone",
    [
        ("daily", "0 0 * * *", None),
        ("Daily", "0 0 * * *", None),
        ("hourly", "0 * * * *", None),
        ("weekly", "0 0 * * 1", None),  # systemd: Mon *-*-* 00:00:00
        ("monthly", "0 0 1 * *", None),
        ("quarterly", "0 0 1 1,4,7,10 *", None),
        ("*-*-* 03:00:00", "0 3 * * *", None),
        ("*-*-* 03:00", "0 3 * * *", None),
        ("03:00", "0 3 * * *", None),
        ("Mon *-*-* 02:30", "30 2 * * 1", None),
        ("Monday 02:30:00", "30 2 * * 1", None),
        ("Mon..Fri 22:15", "15 22 * * 1,2,3,4,5", None),
        ("Sat,Sun 08:00", "0 8 * * 0,6", None),
        ("Fri..Sun 08:00", "0 8 * * 0,5,6", None),
        ("*-*-1,15 04:05", "5 4 1,15 * *", None),
        ("*-01,07-01 04:00", "0 4 1 1,7 *", None),
        ("*-*-* 9..17:0/15", "0-59/15 9-17 * * *", None),
        ("*-*-* 08:07:00 Europe/Berlin", "7 8 * * *", "Europe/Berlin"),
        ("*-*-* 03:00 UTC", "0 3 * * *", "UTC"),
    ],
)
def test_systemd_calendar_forms_become_the_same_cron_schedule(systemd, expected, zone):
    assert cron(systemd) == {"schedule": expected, "timeZone": zone}


@pytest.mark.parametrize(
    "systemd, why",
    [
        ("Sun..Sat 03:00", "runs backwards in systemd's week, which starts on Monday; write the days from Mon to Sun"),
        ("*-*-* 03:00:30", 'the seconds are "30"; write ":00" or leave the seconds out'),
        ("2027-*-* 03:00", 'cron has no year; write "*" for the year'),
        ("Mon *-*-1 03:00", "systemd needs both to match and cron either; name only one of them"),
        ("*-*~1 03:00", 'has no cron form; name the days, e.g. "*-*-28"'),
        ("*-*-* 24:00", 'the hour "24" is not between 0 and 23'),
        ("Someday 03:00", '"Someday" is not a day of the week; use Mon, Tue'),
        ("*-*-* 03:00 and then", '"and" is not understood here; the form is'),
        ("", 'it is empty; write it like "daily"'),
    ],
)
def test_what_cron_cannot_say_is_refused_naming_setting_value_and_what_to_write(systemd, why):
    with pytest.raises(planlib.PlanError) as refused:
        cron(systemd)
    message = str(refused.value)
    assert message.startswith("invalid settings:\n  - backup.schedule = ")  # csm drops "code-server-multi: "
    assert f"backup.schedule = {json.dumps(systemd)} cannot be said exactly as a Kubernetes CronJob schedule" in message
    assert why in message


def test_a_refused_schedule_stops_the_render_with_that_message(tmp_path):
    settings = {**TEAM, "backup": {**TEAM["backup"], "schedule": "Sun..Sat 03:00"}}
    with pytest.raises(planlib.PlanError, match=r'backup.schedule = "Sun..Sat 03:00" cannot be said exactly'):
        render(settings, tmp_path)
    # Backups off: the schedule is never read, as on NixOS.
    off = render({**settings, "backup": {**settings["backup"], "enable": False}}, tmp_path)
    assert not [o for o in off["objects"] if o["kind"] == "CronJob"]


def test_a_cronjob_per_user_into_one_claim_in_csm_backups_format(tmp_path):
    rendered = render(TEAM, tmp_path)
    objects = {(o["kind"], o["metadata"]["name"]): o for o in rendered["objects"]}
    plan = planlib.from_settings(TEAM)
    assert_backup_policy(objects, plan)
    assert sorted(n for k, n in objects if k == "CronJob") == ["code-server-ada-backup", "code-server-bo-backup"]
    claim = objects["PersistentVolumeClaim", "code-server-backups"]["spec"]
    assert claim["resources"]["requests"]["storage"] == str((20 + 5) * 2**30 * (3 + 1))
    job = objects["CronJob", "code-server-ada-backup"]["spec"]
    assert job["schedule"] == "0 3 * * *" and "timeZone" not in job
    (c,) = job["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["CSM_BACKUP_USER"] == "ada" and env["CSM_BACKUP_KEEP"] == "3"
    # The manifest csm restore reads: ours, this domain, owners as the container sees them.
    manifest = json.loads(env["CSM_BACKUP_MANIFEST"])
    assert manifest == {
        "format": hostbackup.FORMAT,
        "version": hostbackup.VERSION,
        "domain": "class.example.org",
        "users": {"ada": {"idBase": 0, "idSize": plan.users["ada"].ids.size}},
    }
    assert c["args"] == ["workspace", "config"]  # the top directories of the claim, from the plan
    assert core_problems(rendered["objects"]) == []
    notes = "\n".join(rendered["notes"])
    assert 'backup.target "/var/backup/code-server-multi" is a host directory and is not used' in notes
    assert "in the kube-controller-manager's time zone" in notes
    zoned = render({**TEAM, "backup": {**TEAM["backup"], "schedule": "*-*-* 03:00 Europe/Vienna"}}, tmp_path)
    (first, _) = [o for o in zoned["objects"] if o["kind"] == "CronJob"]
    assert first["spec"]["timeZone"] == "Europe/Vienna"
    assert "time zone" not in "\n".join(zoned["notes"])


def test_long_names_give_cronjob_names_kubernetes_accepts(tmp_path):
    long = "a" * 50 + "-b" * 6
    rendered = render({**TEAM, "users": {long: {"passwordFile": "/s/l"}}}, tmp_path)
    (job,) = [o for o in rendered["objects"] if o["kind"] == "CronJob"]
    assert len(job["metadata"]["name"]) <= 52  # a CronJob's Jobs add 11 characters to 63
    assert core_problems(rendered["objects"]) == []


def test_backups_off_render_no_claim_no_cronjob_no_note(tmp_path):
    rendered = render({**TEAM, "backup": {"enable": False}}, tmp_path)
    kinds = [(o["kind"], o["metadata"]["name"]) for o in rendered["objects"]]
    assert ("PersistentVolumeClaim", "code-server-backups") not in kinds
    assert not [k for k, _ in kinds if k == "CronJob"]
    assert not [n for n in rendered["notes"] if "backup" in n]


def docs_pods() -> dict[str, dict]:
    """The Pods docs/kubernetes.md applies with `kubectl apply -f - <<'EOF'`, by name."""
    blocks = re.findall(r"kubectl -n code-server-multi apply -f - <<'EOF'\n(.*?)\nEOF\n", DOCS.read_text(), re.S)
    pods = [yaml.safe_load(b) for b in blocks]
    return {p["metadata"]["name"]: p for p in pods}


def test_the_documented_pods_are_valid_hardened_and_name_what_is_rendered(tmp_path):
    pods = docs_pods()
    assert sorted(pods) == ["code-server-ada-restore", "code-server-backups-shell"]
    assert core_problems(list(pods.values())) == []
    team = kube.render(ROOT / "examples/team.nix")
    rendered = {(o["kind"], o["metadata"]["name"]) for o in team["objects"]}
    job = next(o for o in team["objects"] if o["kind"] == "CronJob")
    backup_pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    for pod in pods.values():
        assert_restricted_pod(pod["spec"], f"docs/kubernetes.md's {pod['metadata']['name']}")
        assert pod["spec"]["securityContext"]["runAsUser"] == backup_pod["securityContext"]["runAsUser"]
        for v in pod["spec"]["volumes"]:
            assert ("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]) in rendered
            if v["name"] == "backups":
                assert v["persistentVolumeClaim"]["readOnly"] is True  # a restore never changes an archive
        (c,) = pod["spec"]["containers"]
        assert c["image"] == backup_pod["containers"][0]["image"]
    # The restore writes where the backup reads (the whole claim) and reads where it writes.
    restore = pods["code-server-ada-restore"]["spec"]["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in restore["volumeMounts"]}
    backup_mounts = {m["name"]: m["mountPath"] for m in backup_pod["containers"][0]["volumeMounts"]}
    assert mounts["backups"] == backup_mounts["backups"]
    assert restore["command"][-1].startswith("ada/") and restore["command"][-1].endswith(".tar.gz")
    # Her workspace and the restore never run at once: the scheduler keeps the required
    # anti-affinity both ways, so it must select her workspace's pods as rendered.
    ada = next(o for o in team["objects"] if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "code-server-ada")
    (term,) = pods["code-server-ada-restore"]["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    labels = ada["spec"]["template"]["metadata"]["labels"]
    assert term["labelSelector"]["matchLabels"].items() <= labels.items() and term["labelSelector"]["matchLabels"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
