"""What the gate decides (csm/gate/core.py), below HTTP: logins and their limits, the
cross-site refusal, sessions tied to one user and one password, where a person may be
sent after the login. The live answers through nginx are tests/e2e/test_gate.py's."""

from __future__ import annotations

import hashlib

import pytest

from csm import plan as planlib
from csm.gate.core import Gate, Refused
from csm.runner import passwd

OWN = "http://ada.code.test"


@pytest.fixture
def gate(tmp_path):
    plan = planlib.from_settings(
        {
            "domain": "code.test",
            "runtimeDir": str(tmp_path / "run"),
            "workspaceBase": str(tmp_path / "ws"),
            "gate": {"stateDir": str(tmp_path / "gate")},
            "users": {"ada": {"hashedPasswordFile": "/unused/ada"}, "bo": {"passwordFile": "/unused/bo"}},
        }
    )
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "ada").write_text(passwd.hash_password("ada's password") + "\n")
    (credentials / "bo").write_text("bo's plain password\n")
    (tmp_path / "gate").mkdir()
    return Gate(plan, credentials)


def log_in(gate, user, password, client="192.0.2.1", origin=OWN):
    return gate.log_in(user, password, client, False, origin, None)


def test_the_right_password_opens_that_users_host_only(gate):
    cookie = log_in(gate, "ada", "ada's password")
    assert cookie and len(cookie) >= 43
    assert gate.session_valid(cookie, "ada") and not gate.session_valid(cookie, "bo")
    assert log_in(gate, "ada", "wrong") is None
    bo = log_in(gate, "bo", "bo's plain password", origin="http://bo.code.test")
    assert bo and gate.session_valid(bo, "bo")


def test_wrong_passwords_are_limited_per_address_and_right_ones_never_counted(gate):
    for _ in range(20):
        assert log_in(gate, "ada", "ada's password")  # right ones cost nothing
    for _ in range(14):  # 2 a minute plus 12 an hour
        assert log_in(gate, "ada", "wrong") is None
    with pytest.raises(Refused) as limited:
        log_in(gate, "ada", "ada's password")  # spent: even the right one waits
    assert limited.value.status == 429 and limited.value.retry_after > 0 and "Try again in" in limited.value.message
    assert log_in(gate, "ada", "ada's password", client="192.0.2.2")  # another address is not held


def test_one_ipv6_64_shares_one_allowance(gate):
    for i in range(14):
        assert log_in(gate, "ada", "wrong", client=f"2001:db8:1:2::{i + 1:x}") is None
    with pytest.raises(Refused):
        log_in(gate, "ada", "wrong", client="2001:db8:1:2:ffff::1")
    assert log_in(gate, "ada", "wrong", client="2001:db8:1:3::1") is None  # the next /64 is checked


@pytest.mark.parametrize(
    "origin, fetch_site",
    [
        ("https://evil.example", None),
        ("http://bo.code.test", None),
        ("https://ada.code.test", None),
        ("null", None),
        (None, "cross-site"),
        (None, "same-site"),
    ],
)
def test_a_form_from_another_site_is_refused_before_anything_is_counted(gate, origin, fetch_site):
    for _ in range(20):
        with pytest.raises(Refused) as refused:
            gate.log_in("ada", "wrong", "192.0.2.9", False, origin, fetch_site)
        assert refused.value.status == 403
    assert log_in(gate, "ada", "wrong", client="192.0.2.9") is None  # still checked: nothing was counted


def test_a_busy_gate_says_so_and_a_busy_answer_counts(gate):
    """Both checks in flight for other addresses: a login waits a moment, then hears
    "busy"; that answer keeps its charge, so retrying "busy" costs a guesser their own
    allowance, never anyone else's."""
    assert gate.verifying.try_enter("192.0.2.7") and gate.verifying.try_enter("192.0.2.8")
    try:
        for _ in range(2):
            with pytest.raises(Refused) as busy:
                log_in(gate, "ada", "wrong")
            assert busy.value.status == 503 and busy.value.retry_after
    finally:
        gate.verifying.leave("192.0.2.7")
        gate.verifying.leave("192.0.2.8")
    assert log_in(gate, "ada", "ada's password") is not None  # a slot again
    assert gate.allowance.charge("192.0.2.1 ada") == 0.0  # and the charges were the address's own


def test_one_address_gets_one_check_at_a_time(gate):
    assert gate.verifying.try_enter("192.0.2.1")  # a check of this address in flight
    try:
        with pytest.raises(Refused) as busy:
            log_in(gate, "ada", "ada's password")  # the same address: busy at once
        assert busy.value.status == 503
        assert log_in(gate, "ada", "ada's password", client="192.0.2.2")  # another address: checked
    finally:
        gate.verifying.leave("192.0.2.1")


def test_a_new_password_file_ends_the_sessions_and_nothing_stored_opens_one(gate, tmp_path):
    cookie = log_in(gate, "bo", "bo's plain password", origin="http://bo.code.test")
    stored = (tmp_path / "gate" / "sessions.json").read_text()
    assert cookie not in stored
    # A plain password leaves no cheap digest of itself behind.
    assert hashlib.sha256(b"bo's plain password").hexdigest()[:16] not in stored
    (tmp_path / "credentials" / "bo").write_text("a new password\n")
    assert not gate.session_valid(cookie, "bo")


@pytest.mark.parametrize(
    "path, expected",
    [
        ("/?folder=/home/coder/project", "/?folder=/home/coder/project"),
        (None, "/"),
        ("", "/"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("/\r\nSet-Cookie:x", "/"),
        ("/\u2603", "/"),
        ("/%E2%98%83", "/%E2%98%83"),
    ],
)
def test_after_the_login_a_person_goes_only_to_a_path_of_this_host(path, expected):
    assert Gate.safe_next(path) == expected
