"""A config that explains itself: every mistake a first-time user makes in oemgateway.conf gets
the file, the line, what is wrong, what was expected and what the gateway does about it. Loaded in
this process; through `oemgateway --check`: tests/e2e/test_config_help.py."""

import json
import re
import textwrap

import pytest

from buffers import BUFFERS
from gateway.spool import SPOOL_SPEC
from gateway.config import ConfigError, ConfigLoader
from listeners import LISTENERS

def load(tmp_path, text):
    conf = tmp_path / "oemgateway.conf"
    conf.write_text(textwrap.dedent(text))
    try:
        config = ConfigLoader(LISTENERS, BUFFERS, SPOOL_SPEC).load(str(conf))
        return [], [w.replace(str(conf), "oemgateway.conf") for w in config.warnings]
    except ConfigError as exc:
        return ([p.replace(str(conf), "oemgateway.conf") for p in exc.problems],
                [w.replace(str(conf), "oemgateway.conf") for w in exc.warnings])


# -- syntax: configobj's errors in words ------------------------------------------------------
@pytest.mark.parametrize("header, expected", [
    ("[[a]]", "oemgateway.conf:5: section [[a]] is written a second"),
    ("[[b]", "oemgateway.conf:5: the section header has 2 opening and 1 closing brackets"),
])
def test_a_broken_section_header_is_one_mistake_not_one_per_setting_below_it(tmp_path, header, expected):
    """configobj files the settings under a header it could not use in the section before,
    and reports each as written twice there: only the header is the mistake."""
    problems, _ = load(tmp_path, f"[listeners]\n[[a]]\ntype = socket\nport = 1\n{header}\ntype = socket\n"
                                 "port = 2\n[buffers]\n")
    assert len(problems) == 1 and problems[0].startswith(expected), problems


# -- sections where the gateway does not read them -------------------------------------------


def test_a_misspelled_section_holding_listeners_is_an_error_with_the_name_meant(tmp_path):
    problems, warnings = load(tmp_path, "[listners]\n[[socket]]\ntype = socket\n")
    assert problems == ["oemgateway.conf:3: [listners] [[socket]]: type = socket makes this a listener, but a "
                        "listener is read only as a [[name]] section (two brackets) directly under [listeners]; "
                        "here it is not read ([listners] is not a section the gateway reads; did you mean "
                        "[listeners]?): move it into [listeners], as [[socket]]"]


def test_a_plugin_under_the_other_kind_and_settings_without_a_section(tmp_path):
    problems, _ = load(tmp_path, "[listeners]\ntype = socket\nport = 50012\n[buffers]\n[[socket]]\ntype = socket\n")
    assert problems == [
        "oemgateway.conf:2: [listeners] type = socket: the settings here are directly in [listeners], so "
        "they would not be read: each listener has its own [[name]] section; write e.g. [[socket]] on the "
        "line above them",
        "oemgateway.conf:6: [buffers] [[socket]] type = socket: socket is a listener type, but this section "
        "is under [buffers]: move it under [listeners]"]


# -- typos: the name meant -------------------------------------------------------------------
def test_unknown_names_get_the_name_meant_with_their_line(tmp_path):
    problems, warnings = load(tmp_path, """
        loglevel = DEBUG
        [gateway]
        status_prot = 8079
        port = 50011
        [listeners]
        [[s]]
        type = socket
        prot = 50012
        Bind = 127.0.0.1
        loglevel = DEBUG
        [[[init_setings]]]
        [buffers]
        [[emoncms]]
        type = emoncms
        api_key = 0123456789abcdef0123456789abcdef
        [nodes]
        [[10]]
        scales = 1, 0.01
        unit = W, V
        [[[xt]]]
        [listner]
        """)
    assert problems == []
    assert warnings == [
        "oemgateway.conf:2: 'loglevel' is outside any section and is ignored; it is a [gateway] setting: "
        "put it under [gateway]",
        "oemgateway.conf:4: [gateway]: 'status_prot' is not a [gateway] setting and is ignored; did you "
        "mean 'status_port'?",
        "oemgateway.conf:5: [gateway]: 'port' is not a [gateway] setting and is ignored; it is a setting of "
        "mqtt or socket listeners: put it in their section",
        "oemgateway.conf:9: [listeners] [[s]]: 'prot' is not a setting of socket listeners and is ignored; "
        "did you mean 'port'?",
        "oemgateway.conf:10: [listeners] [[s]]: 'Bind' is not a setting of socket listeners and is ignored; "
        "did you mean 'bind'? ('bind' itself is not set)",
        "oemgateway.conf:11: [listeners] [[s]]: 'loglevel' is not a setting of socket listeners and is "
        "ignored; it is a [gateway] setting: put it under [gateway]",
        "oemgateway.conf:12: [listeners] [[s]]: section [[[init_setings]]] is not read in socket listeners "
        "and is ignored; did you mean 'init_settings'?",
        "oemgateway.conf:16: [buffers] [[emoncms]]: 'api_key' is not a setting of emoncms buffers and is "
        "ignored; did you mean 'apikey'? ('apikey' itself is not set)",
        "oemgateway.conf:20: [nodes] [[10]]: 'unit' is not a node setting and is ignored; did you mean 'units'?",
        "oemgateway.conf:21: [nodes] [[10]]: section [[[xt]]] is not read and is ignored (a node has [[[rx]]] "
        "and [[[tx]]]); did you mean 'tx'?",
        "oemgateway.conf:22: [listner] is not a section the gateway reads and is ignored; did you mean "
        "'listeners'? (the sections are [gateway], [listeners], [buffers] and [nodes])",
    ]


def test_original_type_names_are_suggested_too(tmp_path):
    problems, _ = load(tmp_path, "[listeners]\n[[s]]\ntype = OemGatewaySocketListner\n")
    assert "did you mean 'socket'?" in problems[0]


# -- what the gateway uses: the 2013 settings in today's terms ---------------------------------


def test_an_original_name_and_todays_disagreeing_is_an_error_naming_both(tmp_path):
    problems, _ = load(tmp_path, "[listeners]\n[[s]]\ntype = socket\nport = 50011\n[[[init_settings]]]\n"
                                 "port_nb = 50012\n")
    assert problems == ["oemgateway.conf:6: [listeners] [[s]] [[[init_settings]]] port_nb = 50012 and "
                        "port = 50011 disagree: port_nb is the original name of port; keep one"]


# -- names: their limit is said wherever a name is refused --------------------------------------
LONG = "n" * 65


def test_names_over_64_characters_are_refused_saying_the_limit(tmp_path):
    from gateway.frame import FrameError, parse_values_line
    from listeners.serial import parse_json_line, parse_keyvalue_line
    for parse, line in ((parse_values_line, f"{LONG} 1 2"), (parse_keyvalue_line, f"{LONG}:1"),
                        (parse_json_line, json.dumps({LONG: 1}))):
        with pytest.raises(FrameError, match=r"is 65 characters long: at most 64"):
            parse(line)
    parse_values_line(f"{LONG[:64]} 1")   # 64 is fine
    problems, _ = load(tmp_path, f"""
        [listeners]
        [[usb]]
        type = serial
        nodename = {LONG}
        [nodes]
        [[10]]
        nodename = {LONG}
        names = a, {LONG}
        [[{LONG}]]
        scale = 2
        """)
    assert len(problems) == 4, problems
    assert all("at most 64" in problem for problem in problems), problems


def test_the_readme_states_the_name_limit():
    from tests.support.daemon import ROOT
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"a name of letters, digits, `_` and `-`,\s+at most 64 characters", readme)


def test_a_log_level_that_is_none_is_a_warning_of_check_too(tmp_path):
    _, warnings = load(tmp_path, "[gateway]\nlog_levels = spool=LOUD, urllib3=DEBUG\n[listeners]\n[[s]]\n"
                                 "type = socket\n[buffers]\n[[f]]\ntype = file\n")
    assert warnings == ["oemgateway.conf:2: [gateway]: log_levels: 'spool=LOUD' is not part=LEVEL (e.g. "
                        "spool=DEBUG, urllib3=DEBUG; levels: DEBUG, INFO, WARNING, ERROR, CRITICAL); it is "
                        "ignored"]
