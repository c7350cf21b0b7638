"""A config that explains itself: every mistake a first-time user makes in oemgateway.conf gets
the file, the line, what is wrong, what was expected and what the gateway does about it."""

import json
import re
import subprocess
import sys
import textwrap

import pytest

from buffers import BUFFERS
from gateway.spool import SPOOL_SPEC
from gateway.config import ConfigError, ConfigLoader
from listeners import LISTENERS
from tests.support.daemon import DAEMON

CONFIGOBJ_WORDING = re.compile(r"Cannot compute|Duplicate (keyword|section)|Invalid line|Parse error|"
                               r"matched as neither|too nested", re.IGNORECASE)


def check(tmp_path, text, *args):
    """``oemgateway --check`` (or other ``args``) on ``text``: (exit code, stdout, stderr)."""
    conf = tmp_path / "oemgateway.conf"
    conf.write_text(textwrap.dedent(text))
    result = subprocess.run([sys.executable, str(DAEMON), "--config-file", str(conf), *(args or ["--check"])],
                            capture_output=True, text=True, timeout=60)
    return result.returncode, result.stdout, result.stderr.replace(str(conf), "oemgateway.conf")


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
SECRET = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("text, expected", [
    ("[listeners]\n[[socket]\ntype = socket\n",
     "oemgateway.conf:2: the section header has 2 opening and 1 closing brackets: write as many on both "
     "sides, e.g. [[socket]]"),
    ("[listeners]]\n",
     "oemgateway.conf:1: the section header has 1 opening and 2 closing brackets: write as many on both "
     "sides, e.g. [listeners]"),
    ("[listeners\n",
     "oemgateway.conf:1: a section header must end with ], e.g. [listeners]"),
    ("[gateway]\nloglevel = INFO\nloglevel = DEBUG\n",
     "oemgateway.conf:3: 'loglevel' is set a second time in [gateway] (first at line 2): keep one of the two lines"),
    ("[listeners]\n[[a]]\ntype = socket\n[[a]]\ntype = socket\nport = 50012\n",
     "oemgateway.conf:4: section [[a]] is written a second time in the same place (first at line 2): each "
     "section needs its own name (e.g. [[socket]] and [[socket2]]); the settings below this line are not read"),
    ("[gateway]\nloglevel = INFO\n[[[socket]]]\ntype = socket\n",
     "oemgateway.conf:3: section [[[socket]]] has 3 brackets, but the section above it, [gateway], has 1: a "
     "section can be at most one level deeper than the one it is in (e.g. [listeners], then [[socket]] in "
     "it, then [[[init_settings]]] in that)"),
    ("[[listeners]]\n",
     "oemgateway.conf:1: section [[listeners]] has 2 brackets but is not inside a section: a top-level "
     "section has one, e.g. [listeners]"),
    ("[buffers]\n[[hook]]\ntype = webhook\nheaders = '''X-Key: 1\n[nodes]\n",
     "oemgateway.conf:4: the value of 'headers' starts with ''' and is never closed"),
    ("[gateway]\nloglevel INFO\n",
     "oemgateway.conf:2: 'loglevel' has no '=': every line is a [section], a name = value, or a # comment"),
    (f"[buffers]\n[[e]]\ntype = emoncms\n{SECRET}\n",
     "oemgateway.conf:4: this line has no '=': every line is a [section], a name = value, or a # comment"),
    (f"[buffers]\n[[e]]\ntype = emoncms\napikey: {SECRET}\n",
     "oemgateway.conf:4: 'apikey' uses ':' where '=' is expected: write name = value"),
    ("[gateway]\nloglevel = 'INFO\n",
     "oemgateway.conf:2: the value of 'loglevel' cannot be read: a quote is not closed, or text follows a "
     "closing quote"),
    ("[]\n", "oemgateway.conf:1: a section header needs a name between its brackets, e.g. [listeners]"),
])
def test_syntax_errors_say_the_line_what_is_wrong_and_an_example(tmp_path, text, expected):
    code, out, err = check(tmp_path, text)
    assert code == 1
    lines = err.splitlines()
    assert lines[0].startswith("oemgateway: oemgateway.conf: 1 problem; the gateway does not start with "
                               "this file until it is fixed:"), err
    assert lines[1].startswith("  " + expected), err
    assert not CONFIGOBJ_WORDING.search(err), err
    assert SECRET not in err and "Traceback" not in err


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
@pytest.mark.parametrize("text, line, section", [
    ("[gateway]\nloglevel = INFO\n[socket]\ntype = socket\nport = 50012\n", 4, "[socket]"),
    ("[gateway]\n[[socket]]\ntype = socket\n[buffers]\n", 3, "[gateway] [[socket]]"),
    ("[buffers]\n[[file]]\ntype = file\n[[[socket]]]\ntype = socket\n", 5, "[buffers] [[file]] [[[socket]]]"),
    ("[nodes]\n[[socket]]\ntype = socket\n", 3, "[nodes] [[socket]]"),
])
def test_a_listener_at_the_wrong_level_is_an_error_saying_where_it_goes(tmp_path, text, line, section):
    code, out, err = check(tmp_path, text)
    assert code == 1, out
    assert (f"  oemgateway.conf:{line}: {section}: type = socket makes this a listener, but a listener is "
            "read only as a [[name]] section (two brackets) directly under [listeners]; here it is not "
            "read: move it into [listeners], as [[socket]]") in err.splitlines(), err
    assert "is not a known setting" not in err and "is valid" not in out
    assert "warning: oemgateway.conf: no listeners: nothing will be read" in err


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


@pytest.mark.parametrize("text", ["", "\n\n", "# only comments\n   # here\n"])
def test_an_empty_file_is_refused(tmp_path, text):
    code, out, err = check(tmp_path, text)
    assert code == 1
    assert err.splitlines()[1] == (
        "  oemgateway.conf: the file is empty (or holds only comments): the gateway would read nothing "
        "and send nothing. Start from the shipped oemgateway.conf, or see the README's Configuration section")


def test_a_config_that_reads_nothing_or_sends_nowhere_says_so(tmp_path):
    code, out, err = check(tmp_path, "[buffers]\n[[f]]\ntype = file\n")
    assert code == 0 and out.endswith("is valid (0 listeners, 1 buffer)\n")
    assert err == ("warning: oemgateway.conf: no listeners: nothing will be read (add one under [listeners], "
                   "e.g. [[socket]] with type = socket)\n")
    code, out, err = check(tmp_path, "[listeners]\n[[s]]\ntype = socket\n")
    assert code == 0 and out.endswith("is valid (1 listener, 0 buffers)\n")
    assert err == ("warning: oemgateway.conf: no buffers: what is read is sent nowhere (add one under "
                   "[buffers], e.g. [[file]] with type = file)\n")


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
        "mbus_tcp, modbus_tcp, mqtt or socket listeners: put it in their section",
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


def test_typos_are_shown_with_the_errors_and_an_unknown_type_hides_nothing(tmp_path):
    code, out, err = check(tmp_path, """
        [listeners]
        [[s]]
        type = sockte
        port = 0
        prot = 50012
        [buffers]
        [[e]]
        type = emoncms
        api_key = 0123456789abcdef0123456789abcdef
        [[x]]
        type = carrier-pigeon
        active = maybe
        url = http://example.org
        colour = red
        """)
    assert code == 1
    assert err.splitlines() == [
        "oemgateway: oemgateway.conf: 4 problems; the gateway does not start with this file until they "
        "are fixed:",
        "  oemgateway.conf:4: [listeners] [[s]] type = sockte: there is no listener type 'sockte'; did you "
        "mean 'socket'? (the section's other settings are checked as those of socket listeners)",
        "  oemgateway.conf:5: [listeners] [[s]] port = '0': the value \"0\" is too small (expected a "
        "whole number from 1 to 65535)",
        "  oemgateway.conf:12: [buffers] [[x]] type = carrier-pigeon: there is no buffer type "
        "'carrier-pigeon' (types: emoncms, file, influxdb, mqtt, webhook; the original gateway's names "
        "work too)",
        "  oemgateway.conf:13: [buffers] [[x]] active = 'maybe': the value \"maybe\" is of the wrong type "
        "(expected True or False)",
        "warning: oemgateway.conf:6: [listeners] [[s]]: 'prot' is not a setting of socket listeners and is "
        "ignored; did you mean 'port'?",
        "warning: oemgateway.conf:10: [buffers] [[e]]: 'api_key' is not a setting of emoncms buffers and is "
        "ignored; did you mean 'apikey'? ('apikey' itself is not set)",
        "warning: oemgateway.conf:15: [buffers] [[x]]: 'colour' is not a setting of any buffer type and is "
        "ignored",
    ]
    assert "0123456789abcdef" not in err


def test_original_type_names_are_suggested_too(tmp_path):
    problems, _ = load(tmp_path, "[listeners]\n[[s]]\ntype = OemGatewaySocketListner\n")
    assert "did you mean 'socket'?" in problems[0]


# -- what the gateway uses: the 2013 settings in today's terms ---------------------------------
def test_show_settings_shows_what_the_2013_keys_mean(tmp_path):
    code, out, err = check(tmp_path, """
        [listeners]
        [[Socket]]
            type = OemGatewaySocketListener
            [[[init_settings]]]
                port_nb = 50012
            [[[runtime_settings]]]
        [[RFM2Pi]]
            type = OemGatewayRFM2PiListenerRepeater
            [[[init_settings]]]
                com_port = /dev/ttyAMA0
                port_nb = 50013
            [[[runtime_settings]]]
                sgroup = 210
                frequency = 8
        [buffers]
        [[emoncms_local]]
            type = OemGatewayEmoncmsBuffer
            [[[runtime_settings]]]
                protocol = https://
                domain = emoncms.example.org
                path = /emoncms
                apikey = 0123456789abcdef0123456789abcdef
        """, "--show-settings")
    assert code == 0, err
    settings = json.loads(out)
    socket, radio = settings["listeners"]["Socket"], settings["listeners"]["RFM2Pi"]
    assert (socket["port"], socket["bind"]) == (50012, "0.0.0.0")
    assert (radio["repeater_port"], radio["repeater_bind"]) == (50013, "0.0.0.0")
    assert (radio["group"], radio["frequency"]) == (210, "868")
    assert settings["buffers"]["emoncms_local"]["url"] == "https://emoncms.example.org/emoncms"
    shown = set(socket) | set(radio) | set(settings["buffers"]["emoncms_local"])
    assert not shown & {"port_nb", "sgroup", "protocol", "domain", "path"}


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
