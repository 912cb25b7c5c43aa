"""csm.gate.sessions: what a cookie opens, for how long, and what survives a restart."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading

import pytest

from csm.gate import sessions as sessionslib
from csm.gate.sessions import SessionInfo, SessionStore, StoreError

IDLE, ABSOLUTE = 3600, 8 * 3600
ADA_HASH = "$argon2id$v=19$m=65536,t=3,p=4$ada-salt$ada-hash"
BO_HASH = "$argon2id$v=19$m=65536,t=3,p=4$bo-salt$bo-hash"


class Clock:
    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(tmp_path, clock):
    return SessionStore(tmp_path, IDLE, ABSOLUTE, clock=clock)


def on_disk(tmp_path) -> dict:
    return json.loads((tmp_path / "sessions.json").read_text())["sessions"]


def test_value_is_256_random_bits_and_the_file_holds_only_its_hash(store, tmp_path):
    values = [store.create("ada", ADA_HASH) for _ in range(3)]
    assert len(set(values)) == 3
    for value in values:
        assert len(base64.urlsafe_b64decode(value + "=")) == 32
    text = (tmp_path / "sessions.json").read_text()
    for value in values:
        assert value not in text
        assert sessionslib._sha256(value) in on_disk(tmp_path)
    assert ADA_HASH not in text  # only a short digest of the credential
    assert stat.S_IMODE(os.stat(tmp_path / "sessions.json").st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["sessions.json"]  # no temp file left


def test_check_accepts_the_right_user_and_credential_only(store):
    value = store.create("ada", ADA_HASH)
    assert store.check(value, "ada", ADA_HASH)
    assert not store.check(value, "bo", ADA_HASH)  # ada's cookie on bo's host
    assert store.check(value, "ada", ADA_HASH)  # ...does not end it on ada's
    assert not store.check(value + "x", "ada", ADA_HASH)
    assert not store.check("", "ada", ADA_HASH)
    assert not store.check("\udc80", "ada", ADA_HASH)  # undecodable input is no crash


def test_password_change_ends_older_sessions(store, tmp_path):
    old = store.create("ada", ADA_HASH)
    new_hash = ADA_HASH.replace("ada-hash", "new-hash")
    assert not store.check(old, "ada", new_hash)
    assert not store.check(old, "ada", ADA_HASH)  # removed: never valid again
    assert on_disk(tmp_path) == {}
    fresh = store.create("ada", new_hash)
    assert store.check(fresh, "ada", new_hash)


def test_restart_keeps_sessions(tmp_path, clock):
    first = SessionStore(tmp_path, IDLE, ABSOLUTE, clock=clock)
    ada, bo = first.create("ada", ADA_HASH), first.create("bo", BO_HASH)
    second = SessionStore(tmp_path, IDLE, ABSOLUTE, clock=clock)
    assert second.check(ada, "ada", ADA_HASH) and second.check(bo, "bo", BO_HASH)
    assert not second.check(ada, "bo", BO_HASH)


def test_idle_expiry_and_activity_extends(store, clock):
    value = store.create("ada", ADA_HASH)
    clock.now += IDLE
    assert store.check(value, "ada", ADA_HASH)  # exactly idle_seconds: still in
    clock.now += IDLE
    assert store.check(value, "ada", ADA_HASH)  # the last check counted as activity
    clock.now += IDLE + 0.5
    assert not store.check(value, "ada", ADA_HASH)
    clock.now -= IDLE  # removed when found expired: not back with an earlier clock
    assert not store.check(value, "ada", ADA_HASH)


def test_absolute_expiry_despite_activity(store, clock):
    value = store.create("ada", ADA_HASH)
    start = clock.now
    while clock.now - start + 600 <= ABSOLUTE:
        clock.now += 600
        assert store.check(value, "ada", ADA_HASH)
    clock.now = start + ABSOLUTE + 1
    assert not store.check(value, "ada", ADA_HASH)


def test_logout_ends_that_session_only(store, tmp_path):
    one, two = store.create("ada", ADA_HASH), store.create("ada", ADA_HASH)
    store.delete(one)
    store.delete(one)  # twice: no error
    store.delete("never-issued")
    assert not store.check(one, "ada", ADA_HASH)
    assert store.check(two, "ada", ADA_HASH)
    assert len(on_disk(tmp_path)) == 1


def test_revoke_from_another_instance_takes_effect_without_restart(tmp_path, clock):
    gate = SessionStore(tmp_path, IDLE, ABSOLUTE, clock=clock)
    ada1, ada2, bo = gate.create("ada", ADA_HASH), gate.create("ada", ADA_HASH), gate.create("bo", BO_HASH)
    assert gate.check(ada1, "ada", ADA_HASH)
    clock.now += 1
    cli = SessionStore(tmp_path, IDLE, ABSOLUTE, clock=clock)  # root's `csm sessions --revoke ada`
    assert cli.revoke("ada") == 2
    assert not gate.check(ada1, "ada", ADA_HASH)
    assert not gate.check(ada2, "ada", ADA_HASH)
    assert gate.check(bo, "bo", BO_HASH)
    clock.now += 1
    later = gate.create("ada", ADA_HASH)  # logging in again works
    assert gate.check(later, "ada", ADA_HASH)
    assert SessionStore(tmp_path, IDLE, ABSOLUTE, clock=clock).revoke("ada") == 1
    assert not gate.check(later, "ada", ADA_HASH)


def test_revoke_merges_and_refuses_sessions_created_at_that_instant(tmp_path, clock):
    store = SessionStore(tmp_path, IDLE, ABSOLUTE, clock=clock)
    same_instant = store.create("ada", ADA_HASH)
    assert store.revoke("ada") == 1
    clock.now += 5
    assert store.revoke("bo") == 0
    revoked = json.loads((tmp_path / "revoked.json").read_text())
    assert revoked == {"ada": clock.now - 5, "bo": clock.now}
    assert stat.S_IMODE(os.stat(tmp_path / "revoked.json").st_mode) == 0o600
    assert not store.check(same_instant, "ada", ADA_HASH)
    assert store.revoke("ada") == 0  # nothing live left


def test_revocation_survives_restart(tmp_path, clock):
    value = SessionStore(tmp_path, IDLE, ABSOLUTE, clock=clock).create("ada", ADA_HASH)
    # The gate was down when root revoked; the file still has the session (root never writes it).
    clock.now += 1
    SessionStore(tmp_path, IDLE, ABSOLUTE, clock=clock).revoke("ada")
    assert not SessionStore(tmp_path, IDLE, ABSOLUTE, clock=clock).check(value, "ada", ADA_HASH)


def test_sessions_lists_disk_and_memory(tmp_path, clock):
    gate = SessionStore(tmp_path, IDLE, ABSOLUTE, clock=clock)
    ada = gate.create("ada", ADA_HASH)
    clock.now += 10
    gate.create("bo", BO_HASH)
    cli = SessionStore(tmp_path, IDLE, ABSOLUTE, clock=clock)
    clock.now += 10
    gate.create("bo", BO_HASH)  # after the CLI started: read from disk now
    listed = cli.sessions()
    assert [s.user for s in listed] == ["ada", "bo", "bo"]
    assert listed[0] == SessionInfo("ada", clock.now - 20, clock.now - 20, sessionslib._sha256(ada)[:8])
    assert [s.user for s in cli.sessions("bo")] == ["bo", "bo"]
    assert cli.sessions("cy") == []
    clock.now += 1
    cli.revoke("bo")
    assert [s.user for s in gate.sessions()] == ["ada"]


def test_last_seen_writes_are_throttled(tmp_path, clock, monkeypatch):
    store = SessionStore(tmp_path, IDLE, ABSOLUTE, clock=clock)
    value = store.create("ada", ADA_HASH)
    writes = []
    real = sessionslib._write_json
    monkeypatch.setattr(sessionslib, "_write_json", lambda path, data: (writes.append(path), real(path, data)))
    created = clock.now
    for _ in range(100):  # a burst
        clock.now += 0.1
        assert store.check(value, "ada", ADA_HASH)
    assert writes == []
    clock.now = created + sessionslib.WRITE_EVERY
    assert store.check(value, "ada", ADA_HASH)
    assert len(writes) == 1
    assert on_disk(tmp_path)[sessionslib._sha256(value)]["last_seen"] == clock.now
    clock.now += 1
    assert store.check(value, "ada", ADA_HASH)
    store.flush()  # at shutdown
    assert len(writes) == 2
    assert on_disk(tmp_path)[sessionslib._sha256(value)]["last_seen"] == clock.now
    store.flush()
    assert len(writes) == 2  # nothing pending


def test_a_lost_last_seen_costs_at_most_the_write_interval(tmp_path, clock):
    store = SessionStore(tmp_path, IDLE, ABSOLUTE, clock=clock)
    value = store.create("ada", ADA_HASH)
    for _ in range(IDLE // 10):
        clock.now += 10
        assert store.check(value, "ada", ADA_HASH)
    # crash: no flush. The restarted gate's last_seen lags by under WRITE_EVERY.
    restarted = SessionStore(tmp_path, IDLE, ABSOLUTE, clock=clock)
    clock.now += IDLE - sessionslib.WRITE_EVERY
    assert restarted.check(value, "ada", ADA_HASH)


@pytest.mark.parametrize(
    "content, says",
    [
        ("{not json", "not JSON"),
        ('{"sessions": []}', "not a session store"),
        ('{"sessions": {"abc": {"user": "ada"}}}', "not a session store"),
        ("[]", "not a session store"),
    ],
)
def test_corrupt_sessions_file_is_named_with_the_fix(tmp_path, content, says):
    (tmp_path / "sessions.json").write_text(content)
    with pytest.raises(StoreError, match=says) as err:
        SessionStore(tmp_path, IDLE, ABSOLUTE)
    assert str(tmp_path / "sessions.json") in str(err.value)
    assert "Delete it" in str(err.value) and "logs in again" in str(err.value)


def test_corrupt_revoked_file_fails_closed(store, tmp_path):
    value = store.create("ada", ADA_HASH)
    (tmp_path / "revoked.json").write_text('["ada"]')
    with pytest.raises(StoreError, match="revoked.json"):
        store.check(value, "ada", ADA_HASH)


def test_sessions_per_user_are_bounded(tmp_path, clock, monkeypatch):
    monkeypatch.setattr(sessionslib, "MAX_PER_USER", 5)
    store = SessionStore(tmp_path, IDLE, ABSOLUTE, clock=clock)
    bo = store.create("bo", BO_HASH)
    values = []
    for _ in range(8):
        clock.now += 1
        values.append(store.create("ada", ADA_HASH))
    assert [store.check(v, "ada", ADA_HASH) for v in values] == [False] * 3 + [True] * 5
    assert store.check(bo, "bo", BO_HASH)
    assert len(on_disk(tmp_path)) == 6


def test_create_drops_expired_records(store, tmp_path, clock):
    store.create("ada", ADA_HASH)
    clock.now += IDLE + 1
    store.create("bo", BO_HASH)
    assert [r["user"] for r in on_disk(tmp_path).values()] == ["bo"]


def test_concurrent_checks_and_creates(store, clock):
    values = [store.create("ada", ADA_HASH) for _ in range(20)]
    results, errors = [], []

    def work(i):
        try:
            for _ in range(50):
                results.append(store.check(values[i], "ada", ADA_HASH))
            store.create("bo", BO_HASH)
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and all(results) and len(results) == 1000
    assert len(SessionStore(store.directory, IDLE, ABSOLUTE, clock=clock).sessions()) == 40


def test_root_writes_revoked_json_for_the_directory_owner(tmp_path, clock, monkeypatch):
    """Root's CLI writes revoked.json in the gate's directory: the gate must still read it."""
    chowned = []
    monkeypatch.setattr(sessionslib.os, "geteuid", lambda: 0)
    monkeypatch.setattr(sessionslib.os, "fchown", lambda fd, uid, gid: chowned.append((uid, gid)))
    SessionStore(tmp_path, IDLE, ABSOLUTE, clock=clock).revoke("ada")
    st = os.stat(tmp_path)
    assert chowned == [(st.st_uid, st.st_gid)]
