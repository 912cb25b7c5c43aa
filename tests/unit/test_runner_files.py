"""Directories with the plan's owners and modes; the password files and env files."""

from __future__ import annotations

import os
import stat

import pytest

from csm.plan_types import Directory, SeedFile
from csm.runner import BadInput, files


@pytest.fixture
def user_with(tmp_path, planned_user):
    def make(content: bytes, hashed: bool = True, extra: list[str] = ()):
        f = tmp_path / "secret0"
        f.write_bytes(content)
        planned_user.password.file, planned_user.password.hashed = str(f), hashed
        planned_user.container.environmentFiles = [*extra]
        return planned_user

    return make


def test_password_file_strips_trailing_newlines_only(tmp_path, user_with):
    assert (
        files.password_text(user_with(b"$argon2id$v=19$m=65536,t=3,p=4$abc$def\n"))
        == "$argon2id$v=19$m=65536,t=3,p=4$abc$def"
    )
    assert files.password_text(user_with(b"  spaced value  \n\n", hashed=False)) == "  spaced value  "


@pytest.mark.parametrize(
    "content, message",
    [
        (b"first\nsecond\n", "holds more than one line"),
        (b"with\rreturn", "holds a carriage return"),
        (b"$argon2id$v=19$abc\r\n", "holds a carriage return"),  # saved on Windows
        (b"nul\0byte", "holds a NUL byte"),
        (b"", "is empty"),
        (b"\n", "is empty"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
@pytest.mark.parametrize(
    "hashed, field, fix",
    [
        (True, "hashedPasswordFile", "`csm passwd ada` writes it"),
        (False, "passwordFile", "write the secret alone on one line"),
    ],
)
def test_password_file_refuses_what_is_not_one_line(tmp_path, user_with, content, message, hashed, field, fix):
    """The one rule for secret files, on both paths: the runner's `up` checks it before
    the gate gets its copy; the gate reads the same files (NixOS: as credentials)."""
    with pytest.raises(BadInput, match=message) as e:
        files.password_text(user_with(content, hashed))
    assert f"users.ada.{field}" in str(e.value) and str(tmp_path / "secret0") in str(e.value)
    assert fix in str(e.value)  # and what to do


def test_missing_password_file_names_it_and_the_fix(tmp_path, user_with):
    user = user_with(b"")
    user.password.file = str(tmp_path / "nope")
    with pytest.raises(BadInput, match=r"nope does not exist; .*csm passwd"):
        files.password_text(user)


def test_plain_environment_as_env_file():
    assert files.compose_env({"B": "2", "A": '{"json": true}'}) == 'A={"json": true}\nB=2\n'
    with pytest.raises(BadInput, match="line break"):
        files.compose_env({"A": "x\ny"})


def test_write_private_is_root_only_and_atomic(tmp_path):
    target = tmp_path / "ada.env"
    files.write_private(target, "A=1\n")
    assert target.read_text() == "A=1\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o400
    files.write_private(target, "A=2\n")  # replaces a read-only file
    assert target.read_text() == "A=2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["ada.env"]


def test_ensure_directory_sets_owner_and_mode_and_keeps_contents(tmp_path):
    d = tmp_path / "a" / "b"
    files.ensure_directory(Directory(**{"path": str(d), "uid": 201000, "gid": 201001, "mode": "0700"}))
    st = d.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (201000, 201001, 0o700)
    (d / "keep").write_text("x")
    os.chmod(d, 0o755)
    files.ensure_directory(Directory(**{"path": str(d), "uid": 0, "gid": 0, "mode": "0711"}))
    st = d.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o711)
    assert (d / "keep").read_text() == "x"


def test_secrets_digest_follows_the_key_files(tmp_path, user_with):
    keys = tmp_path / "keys.env"
    keys.write_text("OPENROUTER_API_KEY=one\n")
    user = user_with(b"h", extra=[str(keys)])
    first = files.secrets_digest(user)
    assert files.secrets_digest(user) == first
    keys.write_text("OPENROUTER_API_KEY=two\n")
    assert files.secrets_digest(user) != first
    assert files.extra_env_files(user) == [str(keys)]


def test_a_directory_owner_may_be_an_account_name(tmp_path):
    d = tmp_path / "gate"
    files.ensure_directory(Directory(**{"path": str(d), "uid": "root", "gid": "nogroup", "mode": "0750"}))
    assert (d.stat().st_uid, d.stat().st_gid) == (0, 65534)
    with pytest.raises(Exception, match="does not exist on this host"):
        files.ensure_directory(Directory(**{"path": str(d), "uid": "csm-no-such-account", "gid": 0, "mode": "0750"}))


def test_a_seed_file_is_written_once_and_a_persons_own_version_kept(tmp_path):
    f = SeedFile(
        **{"path": str(tmp_path / "settings.json"), "content": '{"a":1}', "uid": 4242, "gid": 4343, "mode": "0600"}
    )
    assert files.seed_file(f) is True
    st = (tmp_path / "settings.json").stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (4242, 4343, 0o600)
    assert (tmp_path / "settings.json").read_text() == '{"a":1}'
    (tmp_path / "settings.json").write_text('{"mine":true}')
    assert files.seed_file(f) is False
    assert (tmp_path / "settings.json").read_text() == '{"mine":true}'


def test_a_seed_file_is_written_byte_for_byte(tmp_path):
    """What tmpfiles' `f` would have expanded (% specifiers, \\ escapes) arrives as it is."""
    content = '{"terminal.integrated.cwd":"%h/project","x":"a\\nb \\x41 %%","é":"ü"}'
    f = SeedFile(**{"path": str(tmp_path / "settings.json"), "content": content, "uid": 0, "gid": 0, "mode": "0600"})
    old = os.umask(0o077)  # mode from the plan whatever the umask
    try:
        assert files.seed_file(f)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "settings.json").stat().st_mode) == 0o600
    assert (tmp_path / "settings.json").read_bytes() == content.encode()


def test_a_link_planted_in_a_users_directory_is_never_followed(tmp_path):
    """Below a directory the container's user owns, root neither creates, chowns nor
    writes through a symbolic link they made (e.g. User -> /etc)."""
    victim = tmp_path / "victim"
    victim.mkdir()
    victim.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, 201000, 201000)
    (home / "User").symlink_to(victim)
    with pytest.raises(BadInput, match="refusing to follow it"):
        files.ensure_directory(Directory(**{"path": str(home / "User"), "uid": 201000, "gid": 201000, "mode": "0700"}))
    with pytest.raises(BadInput, match="refusing to follow it"):
        files.seed_file(
            SeedFile(
                **{
                    "path": str(home / "User" / "settings.json"),
                    "content": "{}",
                    "uid": 201000,
                    "gid": 201000,
                    "mode": "0600",
                }
            )
        )
    st = victim.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o755) and list(victim.iterdir()) == []
    (home / "settings.json").symlink_to(victim / "planted")
    assert (
        files.seed_file(
            SeedFile(
                **{"path": str(home / "settings.json"), "content": "{}", "uid": 201000, "gid": 201000, "mode": "0600"}
            )
        )
        is False
    )  # exists: kept
    assert not (victim / "planted").exists()
