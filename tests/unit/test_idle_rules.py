"""Idle stop and wake: the settings the plan takes, the nginx lines that hand a
stopped container's refusal to the gate, and the idle decision (csm/idle/). The live
behaviour is in tests/e2e/test_idle.py."""

from __future__ import annotations

import pytest

from csm import plan as planlib
from csm.idle.decision import IdleClock, Sample, should_stop
from csm.idle.signals import parse_time


def settings(top="unset", **user) -> dict:
    s = {
        "domain": "code.test",
        "users": {"ada": {"hashedPasswordFile": "/s/ada", **user}, "bo": {"hashedPasswordFile": "/s/bo"}},
    }
    return s if top == "unset" else {**s, "idleStopAfter": top}


def test_idle_stop_after_defaults_to_an_hour_and_users_override_it():
    plan = planlib.from_settings(settings())
    assert plan.users["ada"].idle.stopAfterSeconds == 3600
    plan = planlib.from_settings(settings("30m", idleStopAfter=None))
    assert plan.users["ada"].idle.stopAfterSeconds is None
    assert plan.users["bo"].idle.stopAfterSeconds == 1800
    assert plan.idle.users == ["bo"]
    assert planlib.from_settings(settings(90, idleStopAfter="2d")).users["ada"].idle.stopAfterSeconds == 172800


def test_null_keeps_everyone_on():
    plan = planlib.from_settings(settings(None))
    assert plan.idle.enable is False and plan.idle.users == []


def test_every_location_to_code_server_hands_a_refusal_to_the_gates_wake():
    """Only a request that passed the gate (auth_request) reaches code-server's socket,
    so only a logged-in person's request meets the 502 of a stopped container."""
    plan = planlib.from_settings(settings("20m"))
    paths = plan.gate.paths
    for name, user in plan.users.items():
        locations = user.nginx["locations"]
        for where, loc in locations.items():
            if loc["proxyPass"] == f"http://unix:{user.socket}:":
                assert "error_page 502 = @csm_wake;" in loc["config"], where
                assert loc["config"][0] == f"auth_request {paths.auth};", where
        wake = locations["@csm_wake"]
        assert wake["proxyPass"] == "http://csm_gate"
        assert f"rewrite ^ {paths.wake}? break;" in wake["config"]
        assert f"proxy_set_header X-CSM-User {name};" in wake["config"]
        assert paths.ready in user.pages["starting"]
        assert "Starting" in user.pages["starting"] and name in user.pages["starting"]


def test_the_check_interval_follows_the_shortest_idle_time():
    assert planlib.from_settings(settings("1h")).idle.checkIntervalSeconds == 30
    assert planlib.from_settings(settings("1h", idleStopAfter=40)).idle.checkIntervalSeconds == 4
    assert planlib.from_settings(settings(10)).idle.checkIntervalSeconds == 2


@pytest.mark.parametrize(
    "top, user, message",
    [
        ("soon", "default", 'idleStopAfter = "soon" is not a duration of at least 10 seconds'),
        ("1h", "5s", 'users.ada.idleStopAfter = "5s" is not a duration of at least 10 seconds'),
        ("1h", -3, "users.ada.idleStopAfter = -3 is not a duration"),
        ("1h", "1 week", 'users.ada.idleStopAfter = "1 week" is not a duration'),
    ],
)
def test_bad_idle_settings_name_the_field(top, user, message):
    with pytest.raises(planlib.PlanError) as err:
        planlib.from_settings(settings(top, idleStopAfter=user))
    assert message in str(err.value) and "or null to keep the container always on" in str(err.value)


def sample(at, connections=0, heartbeat=None, cpu=None):
    return Sample(at=at, connections=connections, heartbeat=heartbeat, cpu_seconds=cpu)


def test_a_user_with_nothing_going_on_is_stopped_after_the_window():
    clock = IdleClock(cpu_threshold=0.05, since=1000)
    for t in range(1000, 1100, 10):
        last = clock.observe("ada", sample(t, cpu=5.0 + (t - 1000) * 0.001))
    assert last == 1000
    assert not should_stop(last, 1059, 60) and should_stop(last, 1060, 60)
    assert not should_stop(last, 10**9, None)  # null: always on


def test_an_open_connection_keeps_the_user_active():
    clock = IdleClock(0.05, since=1000)
    clock.observe("ada", sample(1000))
    assert clock.observe("ada", sample(1500, connections=1)) == 1500


def test_a_busy_cpu_keeps_the_user_active_and_a_quiet_one_does_not():
    clock = IdleClock(0.05, since=1000)
    clock.observe("ada", sample(1000, cpu=100.0))
    assert clock.observe("ada", sample(1010, cpu=100.2)) == 1000  # 0.02 CPUs: idle
    assert clock.observe("ada", sample(1020, cpu=109.0)) == 1020  # 0.88 CPUs: a job runs


def test_a_request_moves_the_heartbeat_and_so_the_last_activity():
    clock = IdleClock(0.05, since=1000)
    assert clock.observe("ada", sample(1300, heartbeat=1290.5)) == 1290.5


def test_a_fresh_start_opens_a_fresh_window():
    clock = IdleClock(0.05, since=1000)
    clock.observe("ada", sample(5000))
    clock.forget("ada")
    assert clock.observe("ada", sample(9000), started_at=8990) == 8990


def test_podman_times():
    assert parse_time("2026-12-01T14:35:01.123456789Z") == 1796135701
    assert parse_time("2026-12-01T15:35:01.5+01:00") == 1796135701
    assert parse_time("0001-01-01T00:00:00Z") is None and parse_time(None) is None
