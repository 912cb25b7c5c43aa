"""What `csm install-units` writes reads back, as systemd reads it, as exactly the
command and environment it was given: $, %, quotes and backslashes in paths included
(csm.testing.unit_file expands variables and specifiers as systemd would, so a missed
escape changes the words). Root runs it, so it names csm by path with a fixed PATH and is
written only when nothing it runs can be changed by another account. The unit brought up
for real is tests/e2e/test_install_units.py."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from csm.runner import BadInput, units
from csm.testing import unit_file

ROOT = Path(__file__).resolve().parents[2]
VENV_CSM = Path(sys.executable).with_name("csm")
ODD = Path('/srv/it\'s "$HOME" 50% ${PATH} back\\slash/team.nix')


def render(tmp_path, settings=ODD, state=Path("/var/lib/csm $USER 100%"), tls=None):
    path = tmp_path / "u.service"
    path.write_text(units.render("/opt/csm %h/bin/csm", settings, state, 8080, tls))
    return unit_file.directives(path)


def test_commands_and_environment_read_back_as_given(tmp_path):
    unit = render(tmp_path)
    env = dict(w.split("=", 1) for v in unit["Environment"] for w in unit_file.words(v, command=False))
    assert env["CSM_STATE_DIR"] == "/var/lib/csm $USER 100%"
    assert unit_file.words(unit["ExecStart"][0], env) == [
        "/opt/csm %h/bin/csm",
        "up",
        str(ODD),
        "--http-port",
        "8080",
        "--no-tls",
    ]
    assert unit_file.words(unit["ExecStop"][0], env) == ["/opt/csm %h/bin/csm", "down"]
    assert unit["Type"] == ["oneshot"] and unit["RemainAfterExit"] == ["yes"]


def test_tls_is_spelt_out(tmp_path):
    assert "--tls" in unit_file.words(render(tmp_path, tls=8443)["ExecStart"][0])


def test_a_line_break_is_refused(tmp_path):
    with pytest.raises(BadInput, match="line break"):
        render(tmp_path, settings=Path("/srv/a\nb.nix"))


def test_a_file_not_written_by_install_units_is_left_alone(tmp_path):
    (tmp_path / "x.service").write_text("[Service]\n")
    with pytest.raises(BadInput, match="not written by `csm install-units`"):
        units.install("text", tmp_path, "x.service")
    assert (tmp_path / "x.service").read_text() == "[Service]\n"
    with pytest.raises(BadInput, match="ending in .service"):
        units.install("text", tmp_path, "../x.service")


# ---- root runs only root's code ----------------------------------------------


def fake_install(tmp_path: Path) -> dict[str, Path]:
    """A csm installed as root would: a venv under opt/, all root's, nothing writable by others."""
    venv = tmp_path / "opt" / "csm"
    (venv / "bin").mkdir(parents=True)
    (venv / "lib").mkdir()
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (venv / "lib" / "csm.py").write_text("")
    (venv / "bin" / "python3").symlink_to(os.path.realpath(sys.executable))
    program = venv / "bin" / "csm"
    program.write_text(f"#!{venv}/bin/python3\nfrom csm.cli import main\nmain()\n")
    program.chmod(0o755)
    (tmp_path / "sbin").mkdir()
    return {"venv": venv, "program": program, "sbin": tmp_path / "sbin"}


def other_python(p):
    """The venv's python is a link to one in a directory its group can write."""
    elsewhere = p["venv"].parent.parent / "py"
    elsewhere.mkdir(mode=0o775)
    elsewhere.chmod(0o775)
    (elsewhere / "python3").symlink_to(os.path.realpath(sys.executable))
    (p["venv"] / "bin" / "python3").unlink()
    (p["venv"] / "bin" / "python3").symlink_to(elsewhere / "python3")


UNSAFE = {
    "csm writable by everyone": (
        lambda p: p["program"].chmod(0o757),
        "bin/csm is writable by its group or by everyone",
    ),
    "venv writable by its group": (lambda p: p["venv"].chmod(0o775), "opt/csm is writable by its group"),
    "a library owned by a user": (
        lambda p: os.chown(p["venv"] / "lib" / "csm.py", 1000, 1000),
        "lib/csm.py is owned by uid 1000",
    ),
    "a parent owned by a user": (lambda p: os.chown(p["venv"].parent, 1000, 1000), "/opt is owned by uid 1000"),
    "the interpreter's directory writable": (other_python, "/py is writable by its group"),
    "a PATH directory writable": (lambda p: p["sbin"].chmod(0o777), "/sbin is writable by its group or by everyone"),
}


def test_a_root_only_install_passes(tmp_path):
    # tmp_path lies in /tmp: sticky, so others cannot replace root's entries in it
    p = fake_install(tmp_path)
    assert units.not_roots_code(p["program"], [p["venv"]], [str(p["sbin"])]) == []


@pytest.mark.parametrize("case", UNSAFE)
def test_anything_another_account_could_change_is_named(tmp_path, case):
    p = fake_install(tmp_path)
    change, named = UNSAFE[case]
    change(p)
    problems = units.not_roots_code(p["program"], [p["venv"]], [str(p["sbin"])])
    assert any(named in problem for problem in problems), problems


def install_units(tmp_path, program, env=None):
    (tmp_path / "units").mkdir(exist_ok=True)
    return subprocess.run(
        [
            program,
            "install-units",
            ROOT / "examples" / "demo.nix",
            "--http-port",
            "8080",
            "--state-dir",
            tmp_path / "state",
            "--unit-dir",
            tmp_path / "units",
            "--unit",
            "t.service",
        ],
        capture_output=True,
        text=True,
        env=env,
    )


def test_a_csm_in_a_writable_directory_writes_no_unit(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(mode=0o775)
    bin_dir.chmod(0o775)
    program = bin_dir / "csm"
    shutil.copy(VENV_CSM, program)  # the same csm and venv, from a directory its group can write
    proc = install_units(tmp_path, program)
    assert proc.returncode == 2, proc.stderr
    assert f"no unit written: root would run {program} at boot" in proc.stderr
    assert f"{bin_dir} is writable by its group" in proc.stderr and "/opt/csm/bin/pip install" in proc.stderr
    assert list((tmp_path / "units").iterdir()) == []


def test_the_unit_names_csm_by_path_with_a_fixed_path_and_systemd_accepts_it(tmp_path):
    if units.not_roots_code(VENV_CSM, units.running_code_dirs(), []):
        pytest.skip(f"this checkout's {VENV_CSM} is not root's alone, so install-units rightly refuses it")
    hostile = {**os.environ, "PATH": f"{tmp_path}/evil:{os.environ['PATH']}"}
    proc = install_units(tmp_path, VENV_CSM, env=hostile)
    assert proc.returncode == 0, proc.stderr
    unit = unit_file.directives(tmp_path / "units" / "t.service")
    env = dict(w.split("=", 1) for v in unit["Environment"] for w in unit_file.words(v, command=False))
    assert env["PATH"] == units.UNIT_PATH
    assert unit_file.words(unit["ExecStart"][0], env)[0] == str(VENV_CSM)
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed: the unit was not verified by systemd")
    verify = subprocess.run(
        ["systemd-analyze", "verify", tmp_path / "units" / "t.service"], capture_output=True, text=True
    )
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
