"""The RFM2Pi listener, end to end: the daemon reads a fake RF12demo board on a pseudo-terminal.

The board (tests/support/fakeboard.py) answers the gateway's commands as the firmware does, so these
tests see what a real board would be sent: which radio settings, in which order, when.
"""

import re
import socket
import struct
import time

from tests.support.configs import listener_config, values_by_node as by_node
from tests.support.daemon import FIXTURES, WAIT, free_port, rewrite_config, send_lines
from tests.support.emoncms_server import WRITE_KEY
from tests.support.fakeboard import FakeBoard

NODES = """
[nodes]
[[10]]
nodename = emontx
[[[rx]]]
names = power1, power2, vrms
datacodes = h, h, H
scales = 1, 1, 0.01
"""


def config(link, emoncms, listener="", extra=""):
    return listener_config(emoncms, f"[[radio]]\ntype = rfm2pi\ncom_port = {link}\n{listener}", extra,
                           gateway="clock = trusted\nconfig_check_interval = 0.1")


RADIO = "baseid = 15\nfrequency = 433\ngroup = 210\nquiet = true"


def wait_for_banner(gw, count=1):
    """The board has answered ``v``: what the test writes next cannot mix with its banner."""
    gw.wait_for_log(r"INFO .*listener '\w+': board ", count)


def config_commands(board):
    return [c for c in board.commands if c[-1] in "ibgq"]


def test_rfm69pi_packets_are_decoded_named_and_noise_never_forwarded(tmp_path, gateway_factory, emoncms):
    with FakeBoard(tmp_path / "ttyAMA0") as board:
        gw = gateway_factory(config(board.port.link, emoncms, RADIO, NODES))
        gw.wait_for_log(r"INFO .*board RF12demo.14: node 15, group 210, 433 MHz, quiet")
        assert board.port.baud() == 38400
        for line in (" ? 10 12 0 34", "> 15i", "-> ack", "-> 2 b", "Available commands:", "OK 3"):
            board.line(line)
        board.packet(10, struct.pack("<hhH", 100, -5, 24012), rssi=-60)
        board.packet(5, bytes([1, 0, 0, 128]), rssi=-72)      # no [nodes] section: int16 pairs
        assert by_node(emoncms.wait_for_rows(7)) == {
            "emontx": {"power1": 100, "power2": -5, "vrms": 240.12, "rssi": -60},
            "5": {"1": 1, "2": -32768, "rssi": -72}}
        gw.wait_for_log(r"board: -> 2 b")
        # the board already had every configured setting: its EEPROM was left alone
        assert board.commands == ["v"] and "setting the board's" not in gw.log
        assert "dropped bad input" not in gw.log


def test_only_differing_settings_are_sent_and_changes_apply_live(tmp_path, gateway_factory, emoncms):
    with FakeBoard(tmp_path / "ttyAMA0", group=212, quiet=False) as board:
        gw = gateway_factory(config(board.port.link, emoncms, RADIO))
        board.wait_for_command("1q")
        assert board.commands == ["v", "210g", "1q"]
        gw.wait_for_log(r"board node 15, group 210, 433 MHz, quiet")   # the board's own word
        rewrite_config(gw.config_path, config(board.port.link, emoncms, RADIO.replace("210", "212")))
        board.wait_for_command("212g")
        board.packet(5, bytes([9, 0]))
        assert emoncms.wait_for_rows(2)[0].value == 9
        assert board.commands == ["v", "210g", "1q", "212g"]
        assert gw.log.count("reading ") == 1 and "closed" not in gw.log   # never reopened


def test_legacy_config_runs_against_a_9600_baud_rfm12pi(tmp_path, gateway_factory, emoncms):
    """The original oemgateway.conf.dist layout, unchanged but for addresses."""
    link, port = tmp_path / "ttyAMA0", free_port()
    text = (FIXTURES / "legacy-rfm2pi.conf").read_text()
    text = text.replace("/dev/ttyAMA0", str(link)).replace("50011", str(port))
    text = text.replace("domain = localhost", f"domain = {emoncms.url[len('http://'):]}")
    text = text.replace("x" * 33, WRITE_KEY)
    with FakeBoard(link, legacy=True, group=212) as board:
        gw = gateway_factory(text)
        board.wait_for_command("210g")
        assert board.port.baud() == 9600
        assert config_commands(board) == ["210g"]     # it had node 15 and 433 MHz already
        board.line("79 i15 g210 @ 433 MHz  Lock: 0")
        board.packet(10, bytes([12, 0, 34, 1]))
        send_lines(port, b"15 69 1664\r\n")
        rows = emoncms.wait_for_rows(4)
        assert by_node(rows) == {"10": {"1": 12, "2": 290}, "15": {"1": 69, "2": 1664}}
        assert "the board did not state its settings" not in gw.log


def test_a_board_that_does_not_report_gets_every_configured_setting(tmp_path, gateway_factory, emoncms):
    with FakeBoard(tmp_path / "ttyAMA0", answers=False) as board:
        gw = gateway_factory(config(board.port.link, emoncms, "baseid = 15\nfrequency = 8\nsgroup = 210"))
        board.wait_for_command("15i")
        gw.wait_for_log(r"INFO .*the board did not state its settings .*sending the configured ones")
        # queued together, written one second apart: the first is out, the others follow
        gw.wait_for_log(r"setting the board's group to 210 \(210g\)")
        settings = [line.split("setting the board's ")[1] for line in gw.log.splitlines() if "setting the" in line]
        assert settings == ["node id to 15 (15i)", "band to 8 (8b)", "group to 210 (210g)"]
        assert board.commands == ["v", "15i"]


def test_time_broadcast_for_emonglcd(tmp_path, gateway_factory, emoncms):
    with FakeBoard(tmp_path / "ttyAMA0") as board:
        before = time.localtime()
        gateway_factory(config(board.port.link, emoncms, "sendtimeinterval = 0.3"))
        broadcasts = board.wait_for_command(r"00,\d\d,\d\d,00,s", count=2)
        after = time.localtime()
        allowed = {"00,%02d,%02d,00,s" % (t.tm_hour, t.tm_min) for t in (before, after)}
        assert set(broadcasts) <= allowed


def test_repeater_port_passes_valid_commands_and_frames_to_the_board(tmp_path, gateway_factory, emoncms):
    port = free_port()
    with FakeBoard(tmp_path / "ttyAMA0", legacy=True) as board:
        gw = gateway_factory(f"""
        [listeners]
        [[RFM2Pi]]
            type = OemGatewayRFM2PiListenerRepeater
            [[[init_settings]]]
                com_port = {board.port.link}
                port_nb = {port}
            [[[runtime_settings]]]
        [buffers]
        [nodes]
        [[20]]
        [[[tx]]]
        datacodes = b, h
        """)
        assert f"listening on 0.0.0.0:{port}" in gw.log
        board.wait_for_command("v")
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as client:
            client.sendall(b"12,34,56,s\r\n999,1s\r\nrm -rf /\r\n10 100 -2\r\n20 -1 300\r\n"
                           b"30 1.5e9\r\n8b\r\n")
            board.wait_for_command("8b")
        assert board.commands == ["v", "12,34,56,s", "10,100,0,254,255,s", "20,255,44,1,s", "8b"]
        gw.wait_for_log(r"WARNING .*repeater 'RFM2Pi': dropped bad input \(999 is not a byte \(0-255\)\)")
        gw.stop()
        assert re.search(r"2 more like that .*latest: .*1500000000.0\) does not fit datacode h", gw.log)


def test_unplug_and_replug_resends_what_the_new_board_lacks(tmp_path, gateway_factory, emoncms):
    board = FakeBoard(tmp_path / "ttyAMA0").plug()
    try:
        gw = gateway_factory(config(board.port.link, emoncms, RADIO))
        wait_for_banner(gw)
        board.packet(5, bytes([1, 0]))
        emoncms.wait_for_rows(1)
        board.unplug()
        gw.wait_for_log(r"WARNING .*lost .*ttyAMA0 \(the device is gone: unplugged\?\)")
        board.settings["g"] = 100                # another board, in another group
        board.plug()
        gw.wait_for_log(r"INFO .*ttyAMA0 is back \(38400 baud\)")
        wait_for_banner(gw, 2)
        board.wait_for_command("210g")
        assert board.commands == ["v", "v", "210g"]
        board.packet(5, bytes([2, 0]))
        assert [r.value for r in emoncms.wait_for_rows(4) if r.name == "1"] == [1, 2]
        gw.stop()
    finally:
        board.unplug()
    assert gw.log.count("INFO oemgateway: ready") == 1
    port_lines = [l.split("listener 'radio': ")[1] for l in gw.log.splitlines()
                  if "oemgateway.listener.radio:" in l and " DEBUG " not in l and "ttyAMA0" in l]
    assert [l.split(" ")[0] for l in port_lines] == ["reading", "lost", str(board.port.link)], port_lines


def test_port_missing_at_start_then_plugged(tmp_path, gateway_factory, emoncms):
    link = tmp_path / "ttyUSB0"
    gw = gateway_factory(config(link, emoncms, RADIO))
    gw.wait_for_log(r"WARNING .*cannot open .*ttyUSB0: no such device")
    with FakeBoard(link, group=1) as board:
        gw.wait_for_log(r"INFO .*reading .*ttyUSB0 at 38400 baud \(available after")
        wait_for_banner(gw)
        board.wait_for_command("210g")
        board.packet(5, bytes([3, 0]))
        assert emoncms.wait_for_rows(1)[0].value == 3


def test_garbage_and_malformed_packets_are_dropped_and_counted(tmp_path, gateway_factory, emoncms):
    with FakeBoard(tmp_path / "ttyAMA0") as board:
        gw = gateway_factory(config(board.port.link, emoncms, "max_line = 64"))
        wait_for_banner(gw)
        board.port.write(b"\xff\xfe\x00\x80\r\n")
        board.line("OK 10 12 300")
        board.line("OK 10 " + "1 " * 60)
        board.line("MSG:1,P1:100")
        board.packet(5, bytes([4, 0]))
        assert emoncms.wait_for_rows(1)[0].value == 4
        gw.wait_for_log(r"WARNING .*dropped bad input \(not UTF-8 line\)")
        gw.stop()
        assert re.search(r"3 more like that .*latest: .*names and values, as an emonTx4", gw.log)


def test_transmit_and_send_frame_from_another_thread(tmp_path):
    """The API an MQTT buffer will use: called on the loop thread via call_soon_threadsafe."""
    import threading

    import pytest

    from buffers import BUFFERS
    from gateway.config import ConfigLoader
    from gateway.eventloop import EventLoop
    from gateway.nodes import NodeDecoder
    from listeners import LISTENERS

    with FakeBoard(tmp_path / "ttyAMA0") as board:
        path = tmp_path / "gw.conf"
        path.write_text(f"[listeners]\n[[radio]]\ntype = rfm2pi\ncom_port = {board.port.link}\n"
                        "[nodes]\n[[20]]\n[[[tx]]]\ndatacodes = b, H\n")
        config = ConfigLoader(LISTENERS, BUFFERS).load(str(path))
        plugin = config.listeners["radio"]
        loop = EventLoop()
        listener = plugin.cls("radio", plugin.settings, loop, lambda frame: None,
                              nodes=NodeDecoder(config.nodes))
        loop.call_soon_threadsafe(listener.open)
        thread = threading.Thread(target=loop.run)
        thread.start()
        try:
            board.wait_for_command("v")
            results = []
            loop.call_soon_threadsafe(lambda: results.append(listener.transmit([1, 2, 3])))
            loop.call_soon_threadsafe(lambda: results.append(listener.transmit([255], dest=10)))
            loop.call_soon_threadsafe(lambda: results.append(listener.send_frame(20, [-1, 65535])))
            board.wait_for_command(r"20,.*s")
            assert board.commands == ["v", "1,2,3,s", "255,10s", "20,255,255,255,s"] and results == [True] * 3
            with pytest.raises(ValueError, match="256 is not a byte"):
                listener.transmit([256])
            with pytest.raises(ValueError, match="does not fit datacode H"):
                listener.send_frame(20, [1, -1])
        finally:
            loop.call_soon_threadsafe(listener.close)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(WAIT)
            loop.close()
    assert not listener.transmit([1]) and listener.radio_stats.tx_dropped == 1
