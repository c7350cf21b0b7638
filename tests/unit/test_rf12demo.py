"""The RF12demo line parser and command checks: both firmware generations, and never a crash."""

import time

import pytest
from hypothesis import given, strategies as st

from protocols.rf12demo import (BoardReport, CommandError, Malformed, Notice, Packet, band_of,
                                check_command, parse_line, send_command, time_command)


@pytest.mark.parametrize("line, packet", [
    (" 10 12 0 34 1", Packet(10, 10, bytes([12, 0, 34, 1]))),                  # RFM12Pi, 9600 baud
    ("OK 10 12 0 34 1 (-60) ", Packet(10, 10, bytes([12, 0, 34, 1]), -60)),    # RFM69Pi, 38400
    ("OK 5 1 2 (-0)", Packet(5, 5, bytes([1, 2]), None)),                       # (-0): not measured
    ("OK G210 10 1 2", Packet(10, 10, bytes([1, 2]), None, 210)),               # group 0: any group
    ("OK 42 7 0", Packet(42, 10, bytes([7, 0]))),                               # ACK flag masked off
    ("OK 10", Packet(10, 10, b"")),
])
def test_packets_of_both_firmware_generations(line, packet):
    assert parse_line(line) == packet


def test_rf69_native_format_masks_six_bits():
    assert parse_line("OK 106 1 0", mask=0x3F).node == 42


@pytest.mark.parametrize("line, kind", [
    (" ? 10 12 0 34", "bad crc"),
    ("> 210g", "echo"),
    ("> 0,12,34,0s", "echo"),
    ("-> ack", "sent"),
    ("-> 3 b", "sent"),
    ("[RFM2Pi]", "banner"),
    ("|emonBase_rfm69pi_LPL V1.0.0|OpenEnergyMonitor.org", "banner"),
    ("Available commands:", "text"),
    ("  <nn> i     - set node ID (standard node ids are 1..30)", "text"),
    ("", "text"),
    ("\x01", "text"),
])
def test_lines_that_are_not_data(line, kind):
    result = parse_line(line)
    assert isinstance(result, Notice) and result.kind == kind


@pytest.mark.parametrize("line, report", [
    ("[RF12demo.14] O i15 g210 @ 433 MHz q1", BoardReport("RF12demo.14", 15, 210, 433, quiet=True)),
    (" E i5 g210 @ 868 MHz", BoardReport(None, 5, 210, 868)),
    ("65 i1 g212 @ 868 MHz  Lock: 1", BoardReport(None, 1, 212, 868)),          # RFM12Pi V2 quirk
    ("[RF12demo.12] J i10* g212 @ 915 MHz c1 o1600 q1 x1",
     BoardReport("RF12demo.12", 10, 212, 915, quiet=True, collect=True, hex_mode=1)),
])
def test_banner_and_config_dump_give_the_board_settings(line, report):
    assert parse_line(line) == report


def test_report_as_command_values():
    report = parse_line("[RF12demo.14] O i15 g210 @ 433 MHz q1")
    assert report.command_values() == {"i": 15, "b": 4, "g": 210, "q": 1, "x": 0}


@pytest.mark.parametrize("line, reason", [
    ("OK 10 12 300", "not a byte value (0-255)"),
    ("OK 10 12 x", "not a byte value"),
    ("OK 10 123456", "not a byte value"),
    ("OK", "without a node id"),
    ("OKX 0A0C", "in hex"),
    ("10 256", "not a byte value (0-255)"),
    ("MSG:1,Vrms:240.1,P1:100", "type = serial"),
    ('{"P1": 100}', "type = serial"),
])
def test_malformed_lines_say_why(line, reason):
    result = parse_line(line)
    assert isinstance(result, Malformed) and reason in result.reason


@given(st.one_of(st.text(), st.text(alphabet="0123456789 OKGX()-?>[]ig@MHz", max_size=40)))
def test_arbitrary_lines_never_raise(line):
    assert isinstance(parse_line(line), (Packet, BoardReport, Notice, Malformed))


@given(st.integers(0, 255), st.binary(min_size=1, max_size=66),
       st.one_of(st.none(), st.integers(-127, -1)), st.booleans())
def test_printed_packets_parse_back(header, payload, rssi, legacy):
    data = " ".join(str(b) for b in payload)
    line = f" {header} {data}" if legacy else f"OK {header} {data}" + (f" ({rssi}) " if rssi else "")
    assert parse_line(line) == Packet(header, header & 0x1F, payload, None if legacy else rssi)


@pytest.mark.parametrize("text, command, gap", [
    ("12,34,56,s", "12,34,56,s", 0.1),
    ("4b", "4b", 1.0),
    ("210g", "210g", 1.0),
    ("1600o", "1600o", 1.0),
    ("v", "v", 0.2),
    (" 00,12,30,00,s ", "00,12,30,00,s", 0.1),
])
def test_valid_commands(text, command, gap):
    assert check_command(text) == (command, gap)


@pytest.mark.parametrize("text, reason", [
    ("999,1s", "999 is not a byte"),
    ("300g", "out of range"),
    ("rm -rf /", "not an RF12demo command"),
    ("12,34", "not an RF12demo command"),
    ("5z", "'z' is not an RF12demo command"),
    ("4B", "not an RF12demo command"),
    ("1,2\n3s", "not an RF12demo command"),
    (",".join(["1"] * 67) + ",s", "more than a radio packet holds"),
])
def test_invalid_commands_say_why(text, reason):
    with pytest.raises(CommandError, match=reason):
        check_command(text)


@given(st.text())
def test_command_check_never_raises_anything_else(text):
    try:
        command, gap = check_command(text)
    except CommandError:
        return
    assert command[-1].islower() and gap > 0


def test_send_command_broadcast_and_to_a_node():
    assert send_command([12, 34]) == "12,34,s"
    assert send_command([12, 34], dest=10) == "12,34,10s"
    for bad in ([], [256], [-1], [1.5], [True]):
        with pytest.raises(CommandError):
            send_command(bad)
    with pytest.raises(CommandError):
        send_command([1], dest=32)


def test_time_command_and_bands():
    assert time_command(time.struct_time((2024, 1, 1, 7, 5, 9, 0, 1, 0))) == "00,07,05,00,s"
    assert [band_of(f) for f in ("4", "8", "9", "433", "868", "915")] == [4, 8, 9, 4, 8, 9]
