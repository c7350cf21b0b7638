"""A config that explains itself: every mistake a first-time user makes in oemgateway.conf gets
the file, the line, what is wrong, what was expected and what the gateway does about it. Through
`oemgateway --check` and `--show-settings`; loaded in this process: tests/unit/test_config_help.py."""

import json
import re
import subprocess
import sys
import textwrap

import pytest

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
