"""csm.checks.http.Target: how a user's address is read and reached."""

import pytest

from csm.checks import CheckFailed
from csm.checks.http import Target
from csm.checks.smoke import deployment_checks


def test_address_is_normalized_as_browsers_send_it():
    t = Target("HTTPS://Ada.Code.Example.org:443/")
    assert (t.url, t.netloc, t.origin, t.port) == (
        "https://ada.code.example.org",
        "ada.code.example.org",
        "https://ada.code.example.org",
        443,
    )
    t = Target("http://ada.code.localhost:8080")
    assert (t.netloc, t.origin, t.port) == ("ada.code.localhost:8080", "http://ada.code.localhost:8080", 8080)
    assert (t.name, t.domain) == ("ada", "code.localhost")


def test_localhost_names_connect_to_loopback_others_resolve():
    assert Target("http://ada.code.localhost:8080").connect_ip == "127.0.0.1"
    assert Target("https://ada.code.example.org").connect_ip is None
    assert Target("https://ada.code.example.org", connect_ip="10.0.0.5").connect_ip == "10.0.0.5"


def test_sibling_and_unknown_host_keep_how_to_connect_but_not_the_password():
    t = Target("http://ada.code.localhost:8080", "secret", source_address="127.0.0.77", ca_file="/ca.pem")
    bo = t.sibling("bo")
    assert (bo.url, bo.connect_ip, bo.source_address, bo.ca_file, bo.password) == (
        "http://bo.code.localhost:8080",
        "127.0.0.1",
        "127.0.0.77",
        "/ca.pem",
        None,
    )
    other = t.unknown_host()
    assert other.url == "http://csm-check.invalid:8080" and other.connect_ip == "127.0.0.1"


def test_password_stays_out_of_repr():
    assert "hunter2" not in repr(Target("http://ada.code.localhost:8080", "hunter2"))


@pytest.mark.parametrize(
    "url",
    [
        "ftp://ada.code.example.org",
        "ada.code.example.org",
        "https://",
        "https://ada.code.example.org/login",
        "https://ada.code.example.org/?x=1",
        "https://user@ada.code.example.org",
        "https://ada.example.org:99999",
    ],
)
def test_bad_addresses_are_refused_with_the_expected_shape(url):
    with pytest.raises(ValueError, match=r"ada\.code\.example\.org|port"):
        Target(url)


def test_unresolvable_name_is_a_failed_check_saying_so():
    with pytest.raises(CheckFailed, match="does not resolve"):
        Target("https://ada.code.invalid").address()


def test_deployment_checks_order_and_options():
    names = [n for n, _ in deployment_checks()]
    assert names[:4] == [
        "healthz_answers",
        "login_page_served",
        "wrong_password_gives_no_session",
        "right_password_gives_session",
    ]
    assert "session_does_not_open_other_user" not in names
    assert "session_does_not_open_other_user" in [n for n, _ in deployment_checks(other_user="bo")]
    full = [n for n, _ in deployment_checks(full=True)]
    assert full[-1] == "login_attempts_rate_limited"  # it limits this address: last
    assert set(full) - set(names) == {"idle_websocket_stays_open", "login_attempts_rate_limited"}
