"""The oemserial listener, end to end: the daemon talks to an emonTx4 (avrdb firmware) played on
a pseudo-terminal, which answers each command as the firmware does."""

import json
import urllib.request

import pytest

from buffers import BUFFERS
from gateway.config import ConfigError, ConfigLoader
from listeners import LISTENERS
from tests.support.configs import listener_config, values_by_node
from tests.support.daemon import WAIT, free_port
from tests.support.oem_boards import AvrdbBoard, SilentBoard
from tests.support.oem_fakeboard import OemFakeBoard


def config(link, emoncms, settings="", status_port=None):
    gateway = "clock = trusted\nconfig_check_interval = 0.1"
    if status_port:
        gateway += f"\nstatus_port = {status_port}"
    return listener_config(emoncms, f"[[emontx]]\ntype = oemserial\ncom_port = {link}\nnodename = emonTx4\n"
                                    f"{settings}", gateway=gateway)


def test_settings_are_sent_in_the_boards_syntax_paced_and_saved_once(tmp_path, gateway_factory, emoncms):
    status_port = free_port()
    with OemFakeBoard(tmp_path / "ttyUSB0", AvrdbBoard()) as board:
        gw = gateway_factory(config(board.port.link, emoncms, "group = 210\nnodeid = 18\nical1 = 90, 3.2\n"
                                    "acfreq = 60\nfrequency = 433.92", status_port))
        gw.wait_for_log(r"INFO .*listener 'emontx': board: emon_CM_6CT_temperature v1.7.0 on emonTx4")
        gw.wait_for_log(r"INFO .*saved to the board's EEPROM")
        assert board.commands == ["l", "n18", "f60", "k1 90 3.2", "l", "s"]
        assert board.board.eeprom["node"] == 18 and board.board.eeprom["ical"][0] == 90.0
        assert board.board.saves == 1
        assert "group: 210 already" in gw.log
        gw.wait_for_log(r"INFO .*node: 17 -> 18: set, sent n18 \(board: node 18\)")
        gw.wait_for_log(r"WARNING .*band: not sent: emon_CM_6CT_temperature has no 433.92 MHz band")

        board.lines([board.board.data_line(msg=5)])
        rows = values_by_node(emoncms.wait_for_rows(18))
        assert rows["emonTx4"]["MSG"] == 5 and rows["emonTx4"]["Vrms"] == 240.12

        with urllib.request.urlopen(f"http://127.0.0.1:{status_port}/status", timeout=WAIT) as answer:
            device = json.load(answer)["listeners"]["emontx"]["devices"][str(board.port.link)]
        assert device["state"] == "problems" and device["board"].startswith("emon_CM_6CT_temperature")
        assert device["settings"]["node"] == {"result": "set", "command": "n18", "answer": "node 18", "reason": None}
        assert device["settings"]["band"]["result"] == "unsupported" and device["saved"] is True

        # the board restarts: after its start-up messages, what it keeps in RAM only (the line
        # frequency) is sent again; nothing is saved
        board.lines(board.board.boot())
        gw.wait_for_log(r"INFO .*the board restarted")
        board.lines([board.board.data_line(msg=6)])
        board.wait_for_command("f60", count=2)
        gw.wait_for_log(r"INFO .*acfreq: \? -> 60: set", count=2)
        assert board.commands[6:] == ["l", "f60", "l"] and board.board.saves == 1
        assert gw.stop() == 0


def test_a_silent_board_is_reported_and_its_readings_still_read(tmp_path, gateway_factory, emoncms):
    with OemFakeBoard(tmp_path / "ttyUSB0", SilentBoard()) as board:
        gw = gateway_factory(config(board.port.link, emoncms, "group = 200"))
        gw.wait_for_log(r"WARNING .*firmware was not recognised \(no known answer to l or 4v\): group not sent")
        assert board.commands == ["l", "4v"]
        board.lines(['{"MSG": 3, "P1": 100}'])       # (the port has long settled)
        assert values_by_node(emoncms.wait_for_rows(2))["emonTx4"] == {"MSG": 3, "P1": 100}


def test_without_board_settings_nothing_is_written(tmp_path, gateway_factory, emoncms):
    with OemFakeBoard(tmp_path / "ttyUSB0", AvrdbBoard()) as board:
        gw = gateway_factory(config(board.port.link, emoncms))
        # (a line this soon after the port opened may be taken for the tail of an earlier one)
        board.lines([board.board.data_line(msg=1), board.board.data_line(msg=2)])
        emoncms.wait_for_rows(18)
        assert gw.stop() == 0 and board.commands == []


@pytest.mark.parametrize("line, words", [
    ("ical1 = abc", "ical1 = abc: expected a number"),
    ("frequency = 444", "frequency = 444: expected 433, 433.92, 868 or 915"),
    ("vcal = 1, 2, 3", "vcal = 1, 2, 3: expected a calibration, or a calibration and a phase"),
    ("nodeid = 61", "nodeid"),
])
def test_bad_board_settings_name_the_file_section_and_key(tmp_path, line, words):
    path = tmp_path / "oemgateway.conf"
    path.write_text(f"[listeners]\n[[emontx]]\ntype = oemserial\n{line}\n")
    with pytest.raises(ConfigError) as raised:
        ConfigLoader(LISTENERS, BUFFERS).load(str(path))
    message = str(raised.value)
    assert words in message and "oemgateway.conf" in message and "emontx" in message, message
