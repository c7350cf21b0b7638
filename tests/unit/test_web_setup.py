"""What the page's Set up is built on: section edits that change only their lines, saves
refused when the file changed under them, backups in the state folder, forms read from the
plugins' specs and samples, and the Test of a destination against the test emoncms."""

import difflib
import os

import pytest

from buffers import BUFFERS
from buffers.emoncms import EmoncmsBuffer
from gateway.config import ConfigLoader
from gateway.spool import SPOOL_SPEC
from gateway.web import forms, textedit, trial
from gateway.web.configedit import BACKUPS_KEPT, MASK, ConfigConflict, ConfigEditor
from listeners import LISTENERS
from tests.support.daemon import ROOT
from tests.support.emoncms_server import WRITE_KEY

SHIPPED = (ROOT / "oemgateway.conf").read_text()


def changed_lines(before: str, after: str):
    return [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
            if line[:1] in "+-" and line[:3] not in ("+++", "---")]


# -- text edits -------------------------------------------------------------------------------
def test_setting_values_touches_only_their_lines():
    after = textedit.set_values(SHIPPED, ["buffers", "emoncms"],
                                {"type": "emoncms", "url": "https://emoncms.org", "apikey": "a" * 32, "timeout": "5"})
    assert changed_lines(SHIPPED, after) == [
        "-        url = http://localhost/emoncms", "+        url = https://emoncms.org",
        "-        apikey =", f"+        apikey = {'a' * 32}",
        "-        # timeout = 10", "+        timeout = 5"]      # the default shown commented out is set
    assert textedit.set_values(after, ["buffers", "emoncms"], {"url": "https://emoncms.org"}) == after


def test_a_new_key_goes_after_the_sections_keys_and_an_empty_value_removes_one():
    text = "# mine\n[gateway]\n  loglevel = INFO   # chatty\n\n[listeners]\n"
    added = textedit.set_values(text, ["gateway"], {"syslog": "True"})
    assert added == "# mine\n[gateway]\n  loglevel = INFO   # chatty\n  syslog = True\n\n[listeners]\n"
    assert textedit.set_values(added, ["gateway"], {"syslog": ""}) == text
    assert textedit.set_values(text, ["gateway"], {"loglevel": "DEBUG"}) == text.replace("INFO", "DEBUG")


def test_values_that_configobj_would_misread_are_quoted():
    text = textedit.set_values("[buffers]\n", ["buffers", "hook"], {"type": "webhook", "token": "a#b", "names": ["x, y", "z"]})
    assert "token = \"a#b\"" in text and "names = \"x, y\", z" in text


def test_new_sections_go_under_their_parent_which_is_made_if_missing():
    text = "[gateway]\n    loglevel = INFO\n\n[listeners]\n    [[tcp]]\n        type = socket\n\n[nodes]\n"
    added = textedit.set_values(text, ["listeners", "usb"], {"type": "serial", "com_port": "/dev/ttyUSB0"})
    assert changed_lines(text, added) == ["+    [[usb]]", "+        type = serial", "+        com_port = /dev/ttyUSB0"]
    assert added.index("[[usb]]") < added.index("[nodes]")
    empty = textedit.set_values("", ["buffers", "emoncms"], {"type": "emoncms"})
    assert empty == "[buffers]\n    [[emoncms]]\n        type = emoncms\n"


def test_removing_a_section_takes_its_keys_subsections_and_comment():
    text = ("[buffers]\n    # Posts to emoncms.\n    [[old]]\n        type = emoncms\n        [[[init_settings]]]\n"
            "            url = http://x\n        # a commented default = 1\n\n    # The file.\n    [[file]]\n        type = file\n")
    assert textedit.remove_section(text, ["buffers", "old"]) == \
        "[buffers]\n\n    # The file.\n    [[file]]\n        type = file\n"
    assert textedit.remove_section(text, ["buffers", "none"]) == text


# -- saves ------------------------------------------------------------------------------------
@pytest.fixture
def editor(tmp_path):
    path = tmp_path / "oemgateway.conf"
    path.write_text(SHIPPED.replace("apikey =\n", f"apikey = {WRITE_KEY}\n", 1))
    return ConfigEditor(str(path), ConfigLoader(LISTENERS, BUFFERS, SPOOL_SPEC),
                        backup_folder=str(tmp_path / "state" / "config-backups"))


def test_a_form_edit_of_the_shipped_config_is_a_diff_of_its_lines(editor):
    before = editor.read()
    editor.edit_section(["buffers", "emoncms"], {"url": "http://localhost/emoncms", "apikey": MASK, "timeout": "5",
                                                 "verify_tls": "False", "batch_size": "100", "retry_max": "10",
                                                 "max_items": "1000"})
    changed = changed_lines(before, editor.read())
    added, removed = [c for c in changed if c[0] == "+"], [c for c in changed if c[0] == "-"]
    assert len(added) == 5                                  # five settings changed: five lines
    assert removed == ["-        # timeout = 10", "-        # verify_tls = True"]   # shown defaults, now set
    assert f"apikey = {WRITE_KEY}" in editor.read()


def test_a_save_based_on_an_older_file_is_refused_and_nothing_is_lost(editor):
    version = editor.version()
    with open(editor.path, "a") as f:
        f.write("# edited on the machine\n")
    edited = editor.read()
    with pytest.raises(ConfigConflict, match="changed after this page read it"):
        editor.edit_section(["nodes", "10"], {"nodename": "home"}, base_version=version)
    with pytest.raises(ConfigConflict):
        editor.save(editor.masked_text(), base_version=version)
    assert editor.read() == edited
    editor.edit_section(["nodes", "10"], {"nodename": "home"}, base_version=editor.version())
    assert "nodename = home" in editor.read() and "# edited on the machine\n" in editor.read()


def test_backups_go_to_the_state_folder_and_are_bounded(editor):
    for i in range(BACKUPS_KEPT + 3):
        editor.edit_section(["nodes", "10"], {"nodename": f"n{i}"})
    kept = sorted(os.listdir(editor.backup_folder))
    assert len(kept) == BACKUPS_KEPT and all(name.startswith("oemgateway.conf.") for name in kept)
    assert "nodename = n11" in open(os.path.join(editor.backup_folder, kept[-1])).read()
    assert sorted(os.listdir(os.path.dirname(editor.path))) == ["oemgateway.conf", "state"]


# -- forms ------------------------------------------------------------------------------------
def test_every_type_has_a_form_with_every_setting_of_its_spec():
    built = forms.forms({"listeners": LISTENERS, "buffers": BUFFERS})
    for kind, registry in (("listeners", LISTENERS), ("buffers", BUFFERS)):
        assert set(built[kind]) == set(registry.names())
        for type_name, form in built[kind].items():
            spec_keys = {line.split("=")[0].strip() for line in registry.resolve(type_name).settings_spec().splitlines()}
            assert {f["key"] for f in form["fields"]} == spec_keys, type_name


def test_a_form_has_descriptions_defaults_bounds_choices_and_masks_secrets():
    emoncms = forms.forms({"buffers": BUFFERS})["buffers"]["emoncms"]
    fields = {f["key"]: f for f in emoncms["fields"]}
    assert fields["url"]["description"].startswith("Where emoncms lives") and not fields["url"]["advanced"]
    assert fields["apikey"]["secret"] and not fields["url"]["secret"]
    assert fields["timeout"]["input"] == "number" and fields["timeout"]["default"] == "10"
    assert fields["timeout"]["description"] == "Seconds to wait for emoncms to answer." and fields["timeout"]["advanced"]
    assert fields["verify_tls"]["choices"] == ["True", "False"]
    assert emoncms["start"] == {"url": "http://localhost/emoncms", "apikey": ""}
    assert fields["active"]["description"].startswith("False: neither record nor send")   # every buffer's
    mqtt = forms.forms({"buffers": BUFFERS})["buffers"]["mqtt"]      # commented out in the shipped file
    assert {f["key"]: f for f in mqtt["fields"]}["qos"]["description"].startswith("1: a reading is delivered")


def test_a_plugin_without_a_sample_gets_one_from_its_spec():
    form = forms.plugin_form(EmoncmsBuffer, "emoncms", None)
    assert "[[emoncms]]" in form["sample"] and "# timeout = 10" in form["sample"]


# -- Test -------------------------------------------------------------------------------------
def test_testing_a_destination_sends_one_reading_and_explains_a_refusal(emoncms):
    good = {"url": emoncms.url, "apikey": WRITE_KEY, "timeout": 5.0, "verify_tls": True, "ca_file": "",
            "active": True, "max_items": 0, "batch_size": 500, "retry_max": 5.0}
    answer = trial.test_destination(EmoncmsBuffer, "emoncms", good)
    assert answer["ok"], answer
    [row] = emoncms.wait_for_rows(1)
    assert (row.node, row.name, row.value) == ("oemgateway", "test", 1)
    refused = trial.test_destination(EmoncmsBuffer, "emoncms", dict(good, apikey="f" * 32))
    assert not refused["ok"] and "API key" in refused["message"] and "Setup > My Account" in refused["advice"]
    dead = trial.test_destination(EmoncmsBuffer, "emoncms", dict(good, url="http://127.0.0.1:9"))
    assert not dead["ok"] and "connection refused" in dead["message"] and "is the server running" in dead["advice"]


def test_testing_a_device_reads_it_once_and_says_what_came():
    from listeners.polling import PollingListener

    class Meter(PollingListener):
        def poll(self):
            return [self.frame("meter", (230.25, 5))]

    settings = {"interval": 10.0, "retry_max": 300.0, "max_line": 4096, "nodelistonly": False}
    answer = trial.test_device(Meter, "meter", settings)
    assert answer == {"ok": True, "message": "read: node meter: 230.25 5", "advice": None}

    class Silent(Meter):
        def poll(self):
            raise OSError("no answer from the meter at address 7")

    assert trial.test_device(Silent, "meter", settings) == {
        "ok": False, "message": "no answer from the meter at address 7", "advice": None}
    running = {"state": "open", "last_frame_age_s": 3.2, "frames_good": 12, "frames_bad": 1}
    assert trial.test_device(Meter, "meter", settings, running)["message"] == \
        "running: last frame 3 s ago, 12 good, 1 bad"


def test_testing_a_serial_device_reads_one_line(tmp_path):
    import pty
    import threading
    controller, device = pty.openpty()
    stop = threading.Event()

    def sending():   # a device sends a reading every 0.1 s, whether anyone listens or not
        while not stop.wait(0.1):
            os.write(controller, b"10 230.5 241\r\n")

    sender = threading.Thread(target=sending)
    sender.start()
    try:
        answer = trial.test_device(None, "usb", {"com_port": os.ttyname(device), "com_baud": 9600})
    finally:
        stop.set()
        sender.join()
    assert answer["ok"] and answer["message"].endswith("10 230.5 241"), answer
    missing = trial.test_device(None, "usb", {"com_port": str(tmp_path / "ttyUSB9"), "com_baud": 9600})
    assert not missing["ok"] and "cannot open" in missing["message"] and "plugged in" in missing["advice"]
    os.close(controller)
    os.close(device)
