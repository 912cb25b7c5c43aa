"""What `csm install-units` writes reads back, as systemd reads it, as exactly the
command and environment it was given: $, %, quotes and backslashes in paths included
(csm.testing.unit_file expands variables and specifiers as systemd would, so a missed
escape changes the words). The unit brought up for real is tests/e2e/test_install_units.py."""
from pathlib import Path

import pytest

from csm.runner import BadInput, units
from csm.testing import unit_file

ODD = Path('/srv/it\'s "$HOME" 50% ${PATH} back\\slash/team.nix')


def render(tmp_path, settings=ODD, state=Path("/var/lib/csm $USER 100%"), tls=None):
    path = tmp_path / "u.service"
    path.write_text(units.render("/opt/csm %h/bin/csm", settings, state, 8080, tls))
    return unit_file.directives(path)


def test_commands_and_environment_read_back_as_given(tmp_path):
    unit = render(tmp_path)
    env = dict(w.split("=", 1) for v in unit["Environment"] for w in unit_file.words(v, command=False))
    assert env["CSM_STATE_DIR"] == "/var/lib/csm $USER 100%"
    assert unit_file.words(unit["ExecStart"][0], env) == \
        ["/opt/csm %h/bin/csm", "up", str(ODD), "--http-port", "8080", "--no-tls"]
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
