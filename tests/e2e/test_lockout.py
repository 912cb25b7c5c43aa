"""Nobody can keep a person out of their workspace, and a class behind one address
gets in: the login limits through nginx, from several 127.0.0.x client addresses.

- Loading the login page is never limited; nginx counts only password submissions.
- Twenty right-password logins from one address within a minute all get in, with a
  few typos among them; more wrong passwords from that address are then held to
  code-server's per-address allowance.
- Three addresses guess for three minutes at the pace nginx lets through; the owner,
  from a fourth, logs in every 20 s and gets in every time.

The last two need the image's per-address login limiter (code-server's own counts
everyone together and refuses even the right password once spent). On a stack of
its own (user lou), with addresses no other test uses: each address has an hourly
allowance of its own. The checks are csm.checks.login's, which nixos-tests/server.py
runs too."""

from __future__ import annotations

import pytest

from csm.checks import http, login

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def lou(live_stack_factory):
    stack = live_stack_factory(["lou"])
    yield stack
    stack.close()


def target(stack, source: str) -> http.Target:
    return http.Target(stack.url("lou"), stack.password("lou"), source_address=source)


def test_loading_the_login_page_is_never_limited(lou):
    print(login.login_page_loads_not_limited(target(lou, "127.0.0.71"), loads=60))


def test_a_class_behind_one_address_gets_in(lou):
    print(login.classroom_logs_in(target(lou, "127.0.0.72"), logins=20, typos=8, guesses=20, seconds=55))


def test_an_attack_from_three_addresses_never_keeps_the_owner_out(lou):
    attackers = [target(lou, f"127.0.0.{n}") for n in (73, 74, 75)]
    print(login.owner_never_locked_out(target(lou, "127.0.0.76"), attackers, minutes=3, owner_every=20))
