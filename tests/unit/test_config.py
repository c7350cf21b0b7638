"""Config loading: the shipped file, legacy files, and errors that name file, section and key."""

import json
import logging
import re

import pytest

from buffers import BUFFERS
from gateway.spool import SPOOL_SPEC
from gateway.config import ConfigError, ConfigLoader
from listeners import LISTENERS
from tests.support.configs import load, problems_of
from tests.support.daemon import FIXTURES, WAIT, shipped_config, rewrite_config


def test_shipped_config_is_valid_and_needs_no_server(tmp_path):
    (tmp_path / "oemgateway.conf").write_text(shipped_config())
    config = ConfigLoader(LISTENERS, BUFFERS).load(str(tmp_path / "oemgateway.conf"))
    assert config.warnings == []
    assert config.listeners["socket"].settings["bind"] == "127.0.0.1"
    assert config.listeners["socket"].settings["port"] == 50011
    assert config.buffers["emoncms"].settings["apikey"] == ""
    assert config.buffers["file"].settings["path"] == str(tmp_path / "readings" / "{node}-%Y-%m-%d.csv")


def test_legacy_config_maps_onto_our_types():
    config = ConfigLoader(LISTENERS, BUFFERS).load(str(FIXTURES / "legacy-socket-emoncms.conf"))
    socket = config.listeners["Socket"]
    # the 2013 keys are read as today's: what runs, and what --show-settings shows
    assert socket.type_name == "socket" and socket.settings["port"] == 50011
    assert socket.settings["bind"] == "0.0.0.0"   # port_nb without bind: every interface, as in 2013
    emoncms = config.buffers["emoncms_local"]
    assert emoncms.type_name == "emoncms"
    assert emoncms.settings["url"] == "http://localhost/emoncms"
    assert not {"protocol", "domain", "path", "port_nb"} & (set(socket.settings) | set(emoncms.settings))
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
    assert "expected a whole number from 1 to 65535" in problems[0]


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
    assert f"there is no listener type 'carrier-pigeon' (types: {', '.join(LISTENERS.names())};" in text
    assert "[listeners] [[c]]: the key 'type' is missing" in text
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
    assert len(config.warnings) == 3
    assert config.warnings[0].endswith("gw.conf: no buffers: what is read is sent nowhere (add one under "
                                       "[buffers], e.g. [[file]] with type = file)")
    assert config.warnings[1].endswith("gw.conf:5: [listeners] [[s]]: 'prot' is not a setting of socket "
                                       "listeners and is ignored; did you mean 'port'?")
    assert config.warnings[2].endswith("gw.conf:7: [listeners] [[s]] [[[runtime_settings]]]: 'colour' is "
                                       "not a setting of socket listeners and is ignored")


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


def test_default_config_is_the_system_one_else_the_one_in_the_current_folder(tmp_path, monkeypatch, capsys):
    """(Run in the test's process, with the system config's path moved: whether this machine
    has an /etc/oemgateway/oemgateway.conf makes no difference.)"""
    import oemgateway
    system = tmp_path / "etc" / "oemgateway.conf"
    monkeypatch.setattr(oemgateway, "SYSTEM_CONFIG", str(system))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "oemgateway.conf").write_text("[gateway]\nloglevel = WARNING\n")
    assert oemgateway.main(["--show-settings"]) == 0
    assert json.loads(capsys.readouterr().out)["gateway"]["loglevel"] == "WARNING"
    system.parent.mkdir()
    system.write_text("[gateway]\nloglevel = ERROR\n")
    assert oemgateway.main(["--show-settings"]) == 0
    assert json.loads(capsys.readouterr().out)["gateway"]["loglevel"] == "ERROR"


# -- what --check must catch: everything that would fail at start ---------------------------------
def test_one_port_claimed_twice_is_an_error_naming_both(tmp_path):
    problems = problems_of(tmp_path, """
        [gateway]
        status_port = 50100
        web_port = 50101
        web_bind = 0.0.0.0
        [listeners]
        [[a]]
        type = socket
        port = 50101
        [[b]]
        type = socket
        bind = ::
        port = 50100
        [[c]]
        type = socket
        bind = 127.0.0.2
        port = 50101
        [[legacy]]
        type = OemGatewaySocketListener
        [[[init_settings]]]
        port_nb = 50102
        [[radio]]
        type = rfm2pi
        repeater_port = 50102
        [[v6]]
        type = socket
        bind = ::1
        port = 50103
        [[v4]]
        type = socket
        port = 50103
        """)
    path = tmp_path / "gw.conf"
    assert problems == [
        f"{path}:9: [listeners] [[a]] port = 50101: 127.0.0.1:50101 overlaps [gateway] web_port "
        "(0.0.0.0:50101): one port cannot be listened on twice",
        f"{path}:13: [listeners] [[b]] port = 50100: [::]:50100 overlaps [gateway] status_port "
        "(127.0.0.1:50100): one port cannot be listened on twice",
        f"{path}:17: [listeners] [[c]] port = 50101: 127.0.0.2:50101 overlaps [gateway] web_port "
        "(0.0.0.0:50101): one port cannot be listened on twice",
        f"{path}:24: [listeners] [[radio]] repeater_port = 50102: 127.0.0.1:50102 overlaps [listeners] "
        "[[legacy]] [[[init_settings]]] port_nb (0.0.0.0:50102): one port cannot be listened on twice",
    ]   # ::1 and 127.0.0.1 are different addresses: [[v6]] and [[v4]] can share a port number


def test_one_serial_device_read_twice_is_an_error(tmp_path):
    (tmp_path / "serial0").symlink_to(tmp_path / "ttyAMA0")
    problems = problems_of(tmp_path, f"""
        [listeners]
        [[radio]]
        type = rfm2pi
        com_port = {tmp_path / 'ttyAMA0'}
        [[meter]]
        type = serial
        com_port = {tmp_path / 'serial0'}
        [[loop1]]
        type = serial
        com_port = loop://
        [[loop2]]
        type = serial
        com_port = loop://
        """)
    assert problems == [f"{tmp_path / 'gw.conf'}:8: [listeners] [[meter]] com_port = {tmp_path / 'ttyAMA0'}: "
                        "the same device as [listeners] [[radio]] com_port; a serial port has one reader"]


@pytest.mark.parametrize("value, reason", [("1e308", "too big"), ("inf", "too big"),
                                           ("nan", "unacceptable"), ("1e309", "too big")])
def test_numbers_that_cannot_be_used_are_errors(tmp_path, value, reason):
    problems = problems_of(tmp_path, f"""
        [gateway]
        hot_max_mb = {value}
        shutdown_timeout = {value}
        [listeners]
        [[s]]
        type = socket
        idle_timeout = {value}
        [buffers]
        [[e]]
        type = emoncms
        retry_max = {value}
        """)
    assert sorted(p.split(": ", 1)[1].split(" = ")[0] for p in problems) == [
        "[buffers] [[e]] retry_max", "[gateway] hot_max_mb", "[gateway] shutdown_timeout",
        "[listeners] [[s]] idle_timeout"]
    assert all(reason in p for p in problems), problems


def test_bind_that_is_no_address_is_an_error(tmp_path):
    problems = problems_of(tmp_path, """
        [gateway]
        status_port = 50110
        status_bind = 300.1.2.3
        [listeners]
        [[s]]
        type = socket
        bind = 10.0.0.256
        [[t]]
        type = socket
        port = 50111
        bind = gateway-host.local
        """)
    assert len(problems) == 2, problems
    assert "gw.conf:4: [gateway] status_bind = 300.1.2.3: not an IP address nor a host name" in problems[0]
    assert "gw.conf:8: [listeners] [[s]]: bind = 10.0.0.256: not an IP address" in problems[1]


def spec_lines():
    """Every configspec line of [gateway] and of every plugin type: ``(where, line)``."""
    from gateway.config import GATEWAY_SPEC
    found = [("[gateway]", line) for line in (GATEWAY_SPEC + SPOOL_SPEC).splitlines() if line.strip()]
    for registry in (LISTENERS, BUFFERS):
        for name in registry.names():
            found += [(name, line) for line in registry.resolve(name).settings_spec().splitlines()]
    return found


def test_every_number_setting_has_a_maximum():
    """A number without a maximum validates (1e308, 10**30) and then overflows a conversion
    or a timer at start, or makes a loop run forever: every one has a sensible bound."""
    unbounded = [(where, line) for where, line in spec_lines()
                 if re.search(r"=\s*(float|integer)\(", line) and "max=" not in line]
    assert unbounded == []


# -- files the loader must survive ------------------------------------------------------------
@pytest.mark.parametrize("text, problem", [
    ("gateway = 3\n", "gateway must be a section [gateway], not a key"),
    ("[gateway]\nlog_levels = 3\n[[x]]\n[[[y]]]\n[[[[z]]]]\n", None),
    ("[listeners]\n[[a]]\ntype = socket\nallow = ,\n", None),
    ("[nodes]\n[[10]]\nnames = a\nscale = nan\n", "[nodes] [[10]] scale = 'nan'"),
    ("[buffers]\n[[f]]\ntype = file\nbackups = 99999999999999999999999\n", "too big"),
    ("\ufeff[gateway]\nloglevel = INFO\n", None),
])
def test_odd_files_give_an_answer_never_a_crash(tmp_path, text, problem):
    path = tmp_path / "gw.conf"
    path.write_text(text)
    try:
        ConfigLoader(LISTENERS, BUFFERS).load(str(path))
        assert problem is None
    except ConfigError as exc:
        assert problem is not None and problem in "\n".join(exc.problems), exc.problems


# -- reloading: whatever goes wrong, the file stays watched ---------------------------------------


class LogWatch(logging.Handler):
    """Stops the loop when a log record matches; keeps every message."""

    def __init__(self, loop):
        super().__init__()
        self.loop, self.pattern, self.messages = loop, None, []

    def emit(self, record):
        self.messages.append(record.getMessage())
        if self.pattern and re.search(self.pattern, self.messages[-1]):
            self.loop.stop()

    def run_until(self, pattern):
        """Run the loop until a record matches ``pattern``; AssertionError after WAIT seconds."""
        self.pattern = pattern
        deadline = self.loop.call_later(WAIT, self.loop.stop)
        self.loop.run()
        deadline.cancel()
        assert any(re.search(pattern, m) for m in self.messages), (pattern, self.messages)


@pytest.mark.parametrize("fault", ["loader", "apply"])
def test_an_unexpected_error_while_reloading_is_logged_and_the_watch_goes_on(tmp_path, fault):
    from gateway.hub import Gateway
    from gateway.spool import build_spool
    from gateway.eventloop import EventLoop
    from gateway.logs import Redactor
    path = tmp_path / "gw.conf"
    path.write_text("[gateway]\nconfig_check_interval = 0.01\ndurability = none\n")
    loader = ConfigLoader(LISTENERS, BUFFERS, SPOOL_SPEC)
    config = loader.load(str(path))
    loop = EventLoop()
    watch = LogWatch(loop)
    logging.getLogger("oemgateway").addHandler(watch)
    gateway = Gateway(loop, loader, Redactor(), build_spool(config.gateway))
    try:
        gateway.start(config)
        if fault == "loader":
            gateway.loader = type("Broken", (), {"load": lambda self, path: 1 / 0})()
        else:
            gateway.apply = lambda config: 1 / 0
        rewrite_config(path, "[gateway]\nconfig_check_interval = 0.01\ndurability = none\nclock = trusted\n")
        watch.run_until(r"not applied|applied only in part")
        gateway.loader = loader
        vars(gateway).pop("apply", None)
        rewrite_config(path, "[gateway]\nconfig_check_interval = 0.01\ndurability = none\nloglevel = DEBUG\n")
        watch.run_until(r"re-read \(the file changed\)")
    finally:
        logging.getLogger("oemgateway").removeHandler(watch)
        gateway.shutdown()
        loop.close()
    assert gateway.config.gateway["loglevel"] == "DEBUG"
    expected = {"loader": "not applied (the file changed): it could not be read",
                "apply": "(the file changed) applied only in part: an internal error stopped it"}[fault]
    assert sum(expected in m for m in watch.messages) == 1, watch.messages
