"""Reading 1-wire thermometers from a w1 sysfs tree in a temp folder."""

import pytest

from protocols.w1therm import (CRC, GARBLED, GONE, NO_ANSWER, POWER_ON, SensorPresence, W1Error, parse_w1_slave,
                               read_sensor, scan, sensor_id_problem)
from tests.support.w1_bus import W1Bus

A, B = "28-000008e2db06", "28-000009770529"


def test_a_good_answer_is_degrees_celsius(tmp_path):
    bus = W1Bus(tmp_path)
    bus.set(A, 23125)
    bus.set(B, -10500)
    assert scan(str(tmp_path)) == [A, B]          # the bus master's folder is not a sensor
    assert read_sensor(str(tmp_path), A) == 23.125
    assert read_sensor(str(tmp_path), B) == -10.5


@pytest.mark.parametrize("milli, crc_ok, kind", [
    (23125, False, CRC), (85000, True, POWER_ON), (-127000, True, NO_ANSWER)])
def test_bad_reads_say_which_failure(tmp_path, milli, crc_ok, kind):
    bus = W1Bus(tmp_path)
    bus.set(A, milli, crc_ok)
    with pytest.raises(W1Error) as caught:
        read_sensor(str(tmp_path), A)
    assert caught.value.kind == kind


def test_a_shorted_bus_passes_the_crc_but_is_not_zero_degrees():
    with pytest.raises(W1Error) as caught:
        parse_w1_slave("00 00 00 00 00 00 00 00 00 : crc=00 YES\n00 00 00 00 00 00 00 00 00 t=0\n")
    assert caught.value.kind == NO_ANSWER


@pytest.mark.parametrize("text", ["", "garbage", "72 01 : crc=57 YES\n72 01 t=abc\n",
                                  "72 01 : crc=57 YES\n72 01 t=200000\n"])
def test_garbled_answers_are_errors_not_readings(text):
    with pytest.raises(W1Error) as caught:
        parse_w1_slave(text)
    assert caught.value.kind == GARBLED


def test_a_vanished_sensor_is_gone(tmp_path):
    bus = W1Bus(tmp_path)
    bus.set(A, 20000)
    bus.remove(A)
    with pytest.raises(W1Error) as caught:
        read_sensor(str(tmp_path), A)
    assert caught.value.kind == GONE


def test_newer_kernels_temperature_file(tmp_path):
    (tmp_path / A).mkdir()
    (tmp_path / A / "temperature").write_text("21500\n")
    assert read_sensor(str(tmp_path), A) == 21.5


def test_no_bus_at_all_is_no_sensors(tmp_path):
    assert scan(str(tmp_path / "missing")) == []


def test_presence_reports_each_change_once():
    presence = SensorPresence(expected=[A, B])
    assert presence.update([A]) == ([A], [B])       # B listed but never found: said once
    assert presence.update([A]) == ([], [])
    assert presence.update([]) == ([], [A])
    assert presence.update([]) == ([], [])
    assert presence.update([A, B]) == ([A, B], [])


@pytest.mark.parametrize("bad", ["28-00000", "28-000008E2DB06", "99-000008e2db06", "sensor1", "28_000008e2db06"])
def test_sensor_ids_are_checked(bad):
    problem = sensor_id_problem(bad)
    assert problem and bad in problem
    assert sensor_id_problem(A) is None
