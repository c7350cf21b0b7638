"""The generic serial listener: its line formats, and the serial layer it shares with the RFM2Pi.

The daemon runs as a subprocess and reads a pseudo-terminal (tests/support/fakeboard.py) reached
through a symlink, so the "device" can be unplugged, replugged, held by another program or
missing at start.
"""

import pytest
import serial
from hypothesis import given, strategies as st

from gateway.frame import FrameError
from listeners.serial import parse_json_line, parse_keyvalue_line
from tests.support.configs import listener_config, values_by_node as by_node
from tests.support.daemon import WAIT, free_port, send_lines
from tests.support.fakeboard import FakePort


def config(link, emoncms, listener="", extra=""):
    return listener_config(emoncms, f"[[tx]]\ntype = serial\ncom_port = {link}\n{listener}", extra)


@pytest.fixture
def device(tmp_path):
    port = FakePort(tmp_path / "ttyUSB").plug()
    yield port
    port.unplug()


# -- line formats -----------------------------------------------------------------------------
def test_keyvalue_and_json_lines():
    assert parse_keyvalue_line("MSG:123,Vrms:240.12,P1:100,E1:5,T1:19.5,pulse:0") == (
        ("MSG", "Vrms", "P1", "E1", "T1", "pulse"), (123, 240.12, 100, 5, 19.5, 0))
    assert parse_json_line('{"MSG": 1, "T1": -2.5}') == (("MSG", "T1"), (1, -2.5))
    for bad in ("P1:abc", "P1", "P1:1,P1:2", "a b:1", "P1:nan"):
        with pytest.raises(FrameError):
            parse_keyvalue_line(bad)
    for bad in ('{"P1": NaN}', '[1, 2]', '{"P1": "1"}', '{"P1": true}', '{"P1": {"x": 1}}', "{"):
        with pytest.raises(FrameError):
            parse_json_line(bad)


@given(st.text())
def test_line_parsers_raise_only_frame_errors(line):
    for parse in (parse_keyvalue_line, parse_json_line):
        try:
            parse(line)
        except FrameError:
            pass


# -- the daemon ---------------------------------------------------------------------------------
def test_nodeid_values_at_9600_as_the_socket_listener_parses_them(gateway_factory, emoncms, device):
    gw = gateway_factory(config(device.link, emoncms))
    gw.wait_for_log(r"reading .*ttyUSB at 9600 baud")
    assert device.baud() == 9600
    device.write(b"\r\n10 1 2.5\r\n11 -3\n")
    assert by_node(emoncms.wait_for_rows(3)) == {"10": {"1": 1, "2": 2.5}, "11": {"1": -3}}


def test_emontx4_keyvalue_and_json_with_its_node_name_and_message_counter(gateway_factory, emoncms, device):
    gw = gateway_factory(config(device.link, emoncms, "com_baud = 115200\nnodename = emontx4"))
    gw.wait_for_log(r"reading .*ttyUSB at 115200 baud")
    assert device.baud() == 115200
    device.write(b"\r\nMSG:1,Vrms:240.12,P1:100\r\n"
                 b"MSG:1,Vrms:240.12,P1:100\r\n"          # sent twice: dropped
                 b'{"MSG": 4, "Vrms": 239.9, "T1": 19.5}\r\n')
    rows = emoncms.wait_for_rows(6)
    assert [(r.node, r.name, r.value) for r in rows] == [
        ("emontx4", "MSG", 1), ("emontx4", "Vrms", 240.12), ("emontx4", "P1", 100),
        ("emontx4", "MSG", 4), ("emontx4", "Vrms", 239.9), ("emontx4", "T1", 19.5)]


def test_nodes_section_names_and_scales_text_frames_and_explains_byte_codes(gateway_factory, emoncms, device):
    gw = gateway_factory(config(device.link, emoncms, "nodelistonly = true", extra="""
    [nodes]
    [[20]]
    nodename = boiler
    names = flow, temp
    scales = 1, 0.1
    [[21]]
    datacodes = h
    """))
    gw.wait_for_log("reading")
    device.write(b"\r\n20 5 123\r\n22 9\r\n21 230.5\r\n21 1 1\r\n")
    assert by_node(emoncms.wait_for_rows(3)) == {"boiler": {"flow": 5, "temp": 12.3}, "21": {"1": 257}}
    gw.wait_for_log(r"node 21: \[nodes\] datacodes unpack bytes 0-255.*holds 230.5.*set datacode = 0")
    gw.wait_for_log(r"WARNING .*dropped a frame from node 22: it has no \[nodes\] section and nodelistonly")


def test_garbage_bytes_and_radio_lines_are_dropped_with_a_reason(gateway_factory, emoncms, device):
    gw = gateway_factory(config(device.link, emoncms, "max_line = 64"))
    gw.wait_for_log("reading")
    device.write(b"\r\nOK 10 12 0 (-60)\r\n"                              # an RFM2Pi's output
                 b"\xff\xfe\x00\r\n\xc3\x28\r\n\x80\x81\r\n"              # three lines that are not text
                 + b"9" * 200 + b"\r\n12 42\r\n")
    assert by_node(emoncms.wait_for_rows(1)) == {"12": {"1": 42}}
    gw.wait_for_log(r"WARNING .*dropped bad input \(not a frame; this looks "
                    r"like an RFM2Pi board's output: use type = rfm2pi\)")
    gw.wait_for_log(r"WARNING .*3 lines in a row .* are not text: is com_baud \(9600\) the device's speed\?")
    gw.stop()
    assert len([line for line in gw.log.splitlines() if " WARNING " in line and "listener 'tx'" in line]) == 3
    assert "... 4 more like that in the last 60 s (latest: listener 'tx': dropped bad input (too long line)" in gw.log


def test_unplug_and_replug_without_restart(gateway_factory, emoncms, device):
    gw = gateway_factory(config(device.link, emoncms))
    gw.wait_for_log("reading")
    device.write(b"\r\n1 1\r\n2 2")                 # the second line is cut by the unplug
    emoncms.wait_for_rows(1)
    device.unplug()
    gw.wait_for_log(r"WARNING .*lost .*ttyUSB \(the device is gone: unplugged\?\)")
    gw.wait_for_log(r"dropped bad input \(half line when the port closed\): 2 2$")
    device.plug()
    gw.wait_for_log(r"INFO .*ttyUSB is back \(9600 baud\)")
    device.write(b"\r\n3 3\r\n")
    assert by_node(emoncms.wait_for_rows(2)) == {"1": {"1": 1}, "3": {"1": 3}}
    gw.stop()
    assert gw.log.count("ready") == 1
    # one line when it goes, one when it is back, nothing in between
    port_lines = [l.split("listener 'tx': ")[1] for l in gw.log.splitlines()
                  if "oemgateway.listener.tx:" in l and " DEBUG " not in l and "ttyUSB" in l]
    assert [l.split(" ")[0] for l in port_lines] == ["reading", "lost", str(device.link)], port_lines


def test_missing_at_start_the_rest_runs_and_it_is_read_when_it_appears(gateway_factory, emoncms, tmp_path):
    port = free_port()
    link = tmp_path / "ttyACM"
    gw = gateway_factory(config(link, emoncms, f"[[net]]\ntype = socket\nport = {port}"))
    gw.wait_for_log(r"WARNING .*cannot open .*ttyACM: no such device \(not plugged in\?")
    send_lines(port, b"7 7\n")
    assert emoncms.wait_for_rows(1)[0].node == "7"
    device = FakePort(link).plug()
    try:
        gw.wait_for_log(r"INFO .*reading .*ttyACM at 9600 baud \(available after \d+ s\)")
        device.write(b"\r\n8 8\r\n")
        assert emoncms.wait_for_rows(2)[1].node == "8"
    finally:
        device.unplug()


def test_a_port_held_by_another_program_says_so_then_is_read(gateway_factory, emoncms, device):
    holder = serial.serial_for_url(str(device.link), exclusive=True)
    try:
        gw = gateway_factory(config(device.link, emoncms))
        gw.wait_for_log(r"WARNING .*cannot open .*ttyUSB: it is in use by another program "
                        r"\(pid \d+ \(.*\)\): stop that program")
    finally:
        holder.close()
    gw.wait_for_log(r"INFO .*reading .*ttyUSB at 9600 baud \(available after")
    device.write(b"\r\n4 4\r\n")
    assert emoncms.wait_for_rows(1)[0].node == "4"


def test_silence_reopens_the_port_when_configured(gateway_factory, emoncms, device):
    gw = gateway_factory(config(device.link, emoncms, "idle_timeout = 0.2"))
    gw.wait_for_log(r"WARNING .*no data from .*ttyUSB for 0.2 s: reopening it")
    gw.wait_for_log(r"DEBUG .*ttyUSB reopened")
    device.write(b"\r\n5 5\r\n")
    gw.wait_for_log(r"INFO .*data from .*ttyUSB again")
    assert emoncms.wait_for_rows(1)[0].node == "5"


def test_a_pyserial_url_without_a_file_descriptor_is_read_too(tmp_path):
    """loop:// (like rfc2217://) has no descriptor for the event loop: it is read on a timer."""
    from gateway.eventloop import EventLoop
    from tests.support.configs import load

    config = load(tmp_path, "[listeners]\n[[loop]]\ntype = serial\ncom_port = loop://\n")
    plugin = config.listeners["loop"]
    loop, frames = EventLoop(), []

    def got(frame):
        frames.append(frame)
        loop.stop()

    listener = plugin.cls("loop", plugin.settings, loop, got)
    listener.open()
    try:
        listener.port.write(b"\r\n10 1 2\r\n")   # a device's output starts with a line end
        loop.call_later(WAIT, loop.stop)
        loop.run()
    finally:
        listener.close()
        loop.close()
    assert [(f.node, f.values) for f in frames] == [(10, (1, 2))]
