"""Lines ended by a lone CR (many serial devices end lines so), through the running daemon:
over the socket and from a serial device. (Bytes to lines in detail: tests/unit/test_lines.py.)"""

from tests.support.configs import listener_config, values_by_node
from tests.support.daemon import free_port, send_lines
from tests.support.fakeboard import FakePort


def test_cr_only_lines_are_separate_frames_over_the_socket(gateway_factory, emoncms):
    port = free_port()
    gateway_factory(listener_config(emoncms, f"[[tcp]]\ntype = socket\nport = {port}"))
    send_lines(port, b"6 1 2\r6 3 4\r")
    rows = emoncms.wait_for_rows(4)
    assert [(r.node, r.name, r.value) for r in rows] == [
        ("6", "1", 1), ("6", "2", 2), ("6", "1", 3), ("6", "2", 4)]


def test_cr_only_serial_device(gateway_factory, emoncms, tmp_path):
    device = FakePort(tmp_path / "ttyUSB").plug()
    try:
        gw = gateway_factory(listener_config(emoncms, f"[[tx]]\ntype = serial\ncom_port = {device.link}"))
        gw.wait_for_log(r"reading .*ttyUSB at 9600 baud")
        # (the first \r ends whatever line the device was in when the port opened)
        device.write(b"\r6 1 2\r6 3 4\r7 5\r")
        rows = emoncms.wait_for_rows(5)
    finally:
        device.unplug()
    assert values_by_node(rows) == {"6": {"1": 3, "2": 4}, "7": {"1": 5}}
    assert [r.value for r in rows] == [1, 2, 3, 4, 5]
