"""Directories with the plan's owners and modes; env files composed from secret files."""
from __future__ import annotations

import os
import stat

import pytest

from csm.runner import BadInput, files


def user_with(tmp_path, *secrets: tuple[str, bytes], extra: list[str] = ()) -> dict:
    from_files = []
    for i, (variable, content) in enumerate(secrets):
        f = tmp_path / f"secret{i}"
        f.write_bytes(content)
        from_files.append({"variable": variable, "file": str(f)})
    env_file = str(tmp_path / "run" / "ada.env")
    return {"name": "ada", "secrets": {"envFile": env_file, "fromFiles": from_files},
            "container": {"environmentFiles": [env_file, *extra]}}


def test_secret_env_strips_trailing_newlines_only(tmp_path):
    user = user_with(tmp_path, ("HASHED_PASSWORD", b"$argon2id$v=19$m=65536,t=3,p=4$abc$def\n"),
                     ("OTHER", b"  spaced value  \n\n"))
    assert files.compose_secret_env(user) == \
        "HASHED_PASSWORD=$argon2id$v=19$m=65536,t=3,p=4$abc$def\nOTHER=  spaced value  \n"


@pytest.mark.parametrize("content, message", [
    (b"first\nsecond\n", "holds more than one line"),
    (b"with\rreturn", "holds a carriage return"),
    (b"$argon2id$v=19$abc\r\n", "holds a carriage return"),   # saved on Windows
    (b"nul\0byte", "holds a NUL byte"),
    (b"", "is empty"),
    (b"\n", "is empty"),
    (b"\xff\xfe", "not UTF-8"),
])
@pytest.mark.parametrize("variable, fix", [
    ("HASHED_PASSWORD", "`csm passwd ada` writes it"),
    ("PASSWORD", "write the secret alone on one line"),
])
def test_secret_env_refuses_what_an_env_file_cannot_carry(tmp_path, content, message, variable, fix):
    """The one rule for both paths: the runner's `up` and the NixOS unit's `csm prepare`
    both compose the env file with compose_secret_env."""
    user = user_with(tmp_path, (variable, content))
    with pytest.raises(BadInput, match=message) as e:
        files.compose_secret_env(user)
    assert f"users.ada {variable}" in str(e.value) and str(tmp_path / "secret0") in str(e.value)
    assert fix in str(e.value)  # and what to do


def test_missing_secret_file_names_it_and_the_fix(tmp_path):
    user = {"name": "ada", "secrets": {"envFile": "/x", "fromFiles": [
        {"variable": "HASHED_PASSWORD", "file": str(tmp_path / "nope")}]}}
    with pytest.raises(BadInput, match=r"nope does not exist; .*csm passwd"):
        files.compose_secret_env(user)


def test_plain_environment_as_env_file():
    assert files.compose_env({"B": "2", "A": '{"json": true}'}) == 'A={"json": true}\nB=2\n'
    with pytest.raises(BadInput, match="line break"):
        files.compose_env({"A": "x\ny"})


def test_the_secret_env_file_is_root_only_and_replaced_atomically(tmp_path):
    user = user_with(tmp_path, ("HASHED_PASSWORD", b"h1\n"))
    files.write_secret_env(user, files.compose_secret_env(user))
    env = tmp_path / "run" / "ada.env"
    assert env.read_text() == "HASHED_PASSWORD=h1\n"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600 and stat.S_IMODE(env.parent.stat().st_mode) == 0o700
    inode = env.stat().st_ino
    files.write_secret_env(user, "HASHED_PASSWORD=h2\n")
    assert env.read_text() == "HASHED_PASSWORD=h2\n" and env.stat().st_ino != inode  # renamed over, never rewritten
    assert sorted(p.name for p in env.parent.iterdir()) == ["ada.env"]


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
    files.ensure_directory({"path": str(d), "uid": 201000, "gid": 201001, "mode": "0700"})
    st = d.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (201000, 201001, 0o700)
    (d / "keep").write_text("x")
    os.chmod(d, 0o755)
    files.ensure_directory({"path": str(d), "uid": 0, "gid": 0, "mode": "0711"})
    st = d.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o711)
    assert (d / "keep").read_text() == "x"


def test_secrets_digest_follows_the_key_files_too(tmp_path):
    keys = tmp_path / "keys.env"
    keys.write_text("OPENROUTER_API_KEY=one\n")
    user = user_with(tmp_path, ("HASHED_PASSWORD", b"h"), extra=[str(keys)])
    env = files.compose_secret_env(user)
    first = files.secrets_digest(env, user)
    assert files.secrets_digest(env, user) == first
    keys.write_text("OPENROUTER_API_KEY=two\n")
    assert files.secrets_digest(env, user) != first
    assert files.secrets_digest(env.replace("h", "g"), user) != files.secrets_digest(env, user)
    assert files.extra_env_files(user) == [str(keys)]


def test_a_seed_file_is_written_once_and_a_persons_own_version_kept(tmp_path):
    f = {"path": str(tmp_path / "settings.json"), "content": '{"a":1}', "uid": 4242, "gid": 4343, "mode": "0600"}
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
    f = {"path": str(tmp_path / "settings.json"), "content": content, "uid": 0, "gid": 0, "mode": "0600"}
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
        files.ensure_directory({"path": str(home / "User"), "uid": 201000, "gid": 201000, "mode": "0700"})
    with pytest.raises(BadInput, match="refusing to follow it"):
        files.seed_file({"path": str(home / "User" / "settings.json"), "content": "{}",
                         "uid": 201000, "gid": 201000, "mode": "0600"})
    st = victim.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o755) and list(victim.iterdir()) == []
    (home / "settings.json").symlink_to(victim / "planted")
    assert files.seed_file({"path": str(home / "settings.json"), "content": "{}",
                            "uid": 201000, "gid": 201000, "mode": "0600"}) is False  # exists: kept
    assert not (victim / "planted").exists()
