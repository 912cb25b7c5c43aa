"""Root links a user's code-server socket where nginx connects only when it is a
socket of that user's own (csm/sockets.py): a symbolic link or another account's
socket planted in the user's directory is never linked, so nginx never reaches another
user's code-server through it. The live attack is in tests/e2e/test_gate.py."""

from __future__ import annotations

import os
import socket

import pytest

from csm import sockets


def listening(path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.listen()
    return s


@pytest.fixture
def user(tmp_path, planned_user):
    (tmp_path / "mine").mkdir()
    planned_user.socketSource = str(tmp_path / "mine" / "code-server.sock")
    planned_user.socket = str(tmp_path / "code-server.sock")
    planned_user.ids.hostUid = os.getuid()
    return planned_user


def test_a_socket_of_the_users_own_is_linked_and_relinked_when_new(user):
    assert sockets.link(user) is False  # not made yet
    first = listening(user.socketSource)
    assert sockets.link(user) and os.stat(user.socket).st_ino == os.stat(user.socketSource).st_ino
    os.unlink(user.socketSource)
    second = listening(user.socketSource)  # code-server started again
    assert sockets.link(user) and os.stat(user.socket).st_ino == os.stat(user.socketSource).st_ino
    first.close(), second.close()


def test_a_planted_symbolic_link_is_never_linked(user, tmp_path):
    other = listening(tmp_path / "other.sock")  # another user's socket
    own = listening(user.socketSource)
    assert sockets.link(user)
    before = os.stat(user.socket).st_ino
    os.rename(user.socketSource, tmp_path / "mine" / "real.sock")
    os.symlink(tmp_path / "other.sock", user.socketSource)
    assert sockets.link(user) is False
    assert os.lstat(user.socket).st_ino == before and not os.path.islink(user.socket)
    other.close(), own.close()


def test_a_socket_another_account_owns_is_never_linked(user):
    s = listening(user.socketSource)
    os.chown(user.socketSource, 4242, 4242)  # not the user's container uid
    assert sockets.link(user) is False and not os.path.lexists(user.socket)
    s.close()


def test_a_file_that_is_no_socket_is_never_linked(user):
    open(user.socketSource, "w").close()
    assert sockets.link(user) is False and not os.path.lexists(user.socket)
