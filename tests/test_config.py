"""Config loading: the shipped file, legacy files, and errors that name file, section and key."""

import json
import subprocess
import sys
import textwrap

import pytest

from buffers import BUFFERS
from gateway.config import ConfigError, ConfigLoader
from listeners import LISTENERS
from tests.conftest import DAEMON, FIXTURES, ROOT


def load(tmp_path, text):
    path = tmp_path / "gw.conf"
    path.write_text(textwrap.dedent(text))
    return ConfigLoader(LISTENERS, BUFFERS).load(str(path))


def problems_of(tmp_path, text):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return info.value.problems


def test_shipped_config_is_valid_and_needs_no_server():
    config = ConfigLoader(LISTENERS, BUFFERS).load(str(ROOT / "oemgateway.conf"))
    assert config.warnings == []
    assert config.listeners["socket"].settings["bind"] == "127.0.0.1"
    assert config.listeners["socket"].settings["port"] == 50011
    assert config.buffers["emoncms"].settings["apikey"] == ""
    assert config.buffers["file"].settings["path"] == str(ROOT / "readings" / "%Y-%m-%d.csv")


def test_legacy_config_maps_onto_our_types():
    config = ConfigLoader(LISTENERS, BUFFERS).load(str(FIXTURES / "legacy-socket-emoncms.conf"))
    socket = config.listeners["Socket"]
    assert socket.type_name == "socket" and socket.settings["port_nb"] == 50011
    emoncms = config.buffers["emoncms_local"]
    assert emoncms.type_name == "emoncms"
    assert emoncms.cls.base_url(emoncms.settings) == "http://localhost/emoncms"
    assert config.gateway["loglevel"] == "DEBUG"
    # the placeholder key of the original example is accepted with a warning
    assert any("apikey" in w for w in config.warnings)


def test_wrong_type_names_file_section_and_key(tmp_path):
    problems = problems_of(tmp_path, """
        [listeners]
        [[Socket]]
        type = socket
        port = abc
        """)
    assert len(problems) == 1
    assert str(tmp_path / "gw.conf") in problems[0]
    assert "[listeners] [[Socket]] port = 'abc'" in problems[0]
    assert "expected integer(min=1, max=65535)" in problems[0]


def test_legacy_subsection_is_named_in_errors(tmp_path):
    problems = problems_of(tmp_path, """
        [listeners]
        [[Socket]]
        type = OemGatewaySocketListener
        [[[init_settings]]]
        port_nb = 70000
        [[[runtime_settings]]]
        """)
    assert "[listeners] [[Socket]] [[[init_settings]]] port_nb = '70000'" in problems[0]
    assert "too big" in problems[0]


def test_every_problem_is_reported_at_once(tmp_path):
    problems = problems_of(tmp_path, """
        [gateway]
        loglevel = LOUD
        [listeners]
        [[a]]
        type = socket
        max_line = 1
        [[b]]
        type = carrier-pigeon
        [[c]]
        port = 1
        [buffers]
        [[e]]
        type = emoncms
        active = maybe
        [[f]]
        type = emoncms
        url = ftp://example
        """)
    text = "\n".join(problems)
    assert len(problems) == 6, text
    assert "[gateway] loglevel = 'LOUD'" in text
    assert "[listeners] [[a]] max_line" in text
    assert "unknown listener type 'carrier-pigeon' (known types: rfm12pi, rfm2pi, serial, socket)" in text
    assert "[listeners] [[c]]: key 'type' is missing" in text
    assert "[buffers] [[e]] active = 'maybe'" in text
    assert "expected an http:// or https:// URL" in text


def test_syntax_error_names_the_line(tmp_path):
    problems = problems_of(tmp_path, """
        [gateway]
        loglevel = INFO
        [listeners
        """)
    assert f"{tmp_path / 'gw.conf'}:4:" in problems[0]


def test_key_in_both_places_is_an_error(tmp_path):
    problems = problems_of(tmp_path, """
        [listeners]
        [[s]]
        type = socket
        port = 5000
        [[[init_settings]]]
        port = 5001
        """)
    assert "key 'port' is set both in the section and in [[[init_settings]]]" in problems[0]


def test_unknown_keys_are_warnings_naming_where(tmp_path):
    config = load(tmp_path, """
        [listeners]
        [[s]]
        type = socket
        prot = 5000
        [[[runtime_settings]]]
        colour = blue
        """)
    assert len(config.warnings) == 2
    assert "[listeners] [[s]]: 'prot' is not a known setting" in config.warnings[0]
    assert "[[[runtime_settings]]]: 'colour' is not a known setting" in config.warnings[1]


def test_type_names_ignore_case_and_accept_original_names(tmp_path):
    config = load(tmp_path, """
        [buffers]
        [[a]]
        type = Emoncms
        [[b]]
        type = oemgatewayemoncmsbuffer
        """)
    assert {p.type_name for p in config.buffers.values()} == {"emoncms"}


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    config = load(tmp_path, """
        [buffers]
        [[f]]
        type = file
        path = data/x.csv
        """)
    assert config.buffers["f"].settings["path"] == str(tmp_path / "data" / "x.csv")


def test_percent_signs_are_not_interpolated(tmp_path):
    config = load(tmp_path, """
        [buffers]
        [[f]]
        type = file
        path = /tmp/%(x)s-%Y.csv
        """)
    assert config.buffers["f"].settings["path"] == "/tmp/%(x)s-%Y.csv"


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, str(DAEMON), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=60)


def test_check_exit_codes_and_messages(tmp_path):
    good = run_cli("--config-file", str(ROOT / "oemgateway.conf"), "--check")
    assert good.returncode == 0, good.stderr
    assert "is valid" in good.stdout
    bad = tmp_path / "bad.conf"
    bad.write_text("[listeners]\n[[s]]\ntype = socket\nport = 0\n")
    result = run_cli("--config-file", str(bad), "--check")
    assert result.returncode == 1
    assert f"{bad}: [listeners] [[s]] port = '0': the value \"0\" is too small" in result.stderr


def test_daemon_refuses_to_start_on_bad_config(tmp_path):
    bad = tmp_path / "bad.conf"
    bad.write_text("[buffers]\n[[e]]\ntype = emoncms\ntimeout = soon\n")
    result = run_cli("--config-file", str(bad))
    assert result.returncode == 1
    assert "[buffers] [[e]] timeout = 'soon'" in result.stderr


def test_missing_config_file(tmp_path):
    result = run_cli("--config-file", str(tmp_path / "nope.conf"))
    assert result.returncode == 1
    assert "nope.conf: no such file" in result.stderr


def test_default_config_is_the_one_in_the_current_folder(tmp_path):
    (tmp_path / "oemgateway.conf").write_text("[gateway]\nloglevel = WARNING\n")
    result = run_cli("--show-settings", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["gateway"]["loglevel"] == "WARNING"


def test_show_settings_masks_secrets(tmp_path):
    key = "0123456789abcdef0123456789abcdef"
    conf = tmp_path / "k.conf"
    conf.write_text(f"[buffers]\n[[e]]\ntype = emoncms\napikey = {key}\n")
    result = run_cli("--config-file", str(conf), "--show-settings")
    assert result.returncode == 0
    assert key not in result.stdout
    assert json.loads(result.stdout)["buffers"]["e"]["apikey"] == "***"


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("OEM Gateway ")
