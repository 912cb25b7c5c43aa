"""What finishes podman's half-done restarts (csm/idle/restarts.py) acts only on a
container podman began to restart, and counts per container: a new container (an
`up` that recreated it) starts again at 0. The restart itself is proven live in
tests/e2e/test_resilience.py."""

from csm.idle import restarts


def info(status: str, restart_count: int, cid: str = "c1") -> dict:
    return {"Id": cid, "State": {"Status": status}, "RestartCount": restart_count}


def test_only_a_restart_podman_began_and_left_created_is_finished():
    assert restarts.half_restarted(info("created", 1))
    assert not restarts.half_restarted(info("created", 0)), "a container `up` has just created"
    assert not restarts.half_restarted(info("exited", 1)), "stopped by a person or the idle stop"
    assert not restarts.half_restarted(info("running", 2))


def test_counts_belong_to_one_container(tmp_path, planned_plan):
    plan = planned_plan
    plan.idle.stateDir = str(tmp_path / "idle")
    assert restarts.count(plan, "ada", "c1") == 0
    restarts._record(plan, "ada", "c1")
    restarts._record(plan, "ada", "c1")
    restarts._record(plan, "bo", "c9")
    assert restarts.count(plan, "ada", "c1") == 2
    assert restarts.count(plan, "bo", "c9") == 1
    assert restarts.count(plan, "ada", "c2") == 0, "a recreated container has not been restarted"
    restarts._record(plan, "ada", "c2")
    assert restarts.count(plan, "ada", "c2") == 1


def test_a_container_that_keeps_dying_is_restarted_less_and_less_often(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(restarts.time, "monotonic", lambda: clock[0])
    r = restarts.Restarter({"users": {}}, control=None)

    def restart_now():
        assert not r._backing_off("ada")
        r._recent["ada"].append(clock[0])

    restart_now()
    clock[0] += 5
    assert r._backing_off("ada"), "6 s after one restart"
    clock[0] += 1
    restart_now()
    clock[0] += 11
    assert r._backing_off("ada"), "12 s after two"
    clock[0] += restarts.BACKOFF_WINDOW
    restart_now()  # old restarts are forgotten
