"""The durable pulse total: restarts, kill -9, power cuts, torn writes, and how often it writes."""

import shutil

import pytest

from listeners.pulse_total import SAVE_RETRY, SLOT, PulseTotal


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def total(tmp_path, clock=None, save_interval=60.0):
    return PulseTotal(str(tmp_path / "run" / "p.total"), str(tmp_path / "state" / "p.total"), save_interval,
                      clock or Clock())


def test_a_new_meter_starts_at_its_initial_reading(tmp_path):
    t = total(tmp_path)
    assert t.load(initial=1234) == 1234
    t.add(1)
    t.close()
    assert total(tmp_path).load(initial=0) == 1235      # the saved total wins over initial


def test_a_clean_restart_keeps_every_pulse(tmp_path):
    t = total(tmp_path)
    t.load()
    for _ in range(50):
        t.add(1)
    t.close()
    assert total(tmp_path).load() == 50


def test_kill_9_keeps_every_pulse_through_the_tmpfs_mirror(tmp_path):
    t = total(tmp_path)
    t.load()
    for _ in range(50):
        t.add(1)                     # no close(): the process died
    assert total(tmp_path).load() == 50


def test_a_power_cut_loses_at_most_the_pulses_since_the_last_save(tmp_path):
    clock = Clock()
    t = total(tmp_path, clock)
    t.load()
    t.add(1)                         # after a quiet spell: saved at once
    clock.now += 10
    for _ in range(9):
        t.add(1)                     # within save_interval: mirrored only
    clock.now += 60
    t.add(1)                         # the interval has passed: saved, 11
    clock.now += 1
    t.add(1)
    shutil.rmtree(tmp_path / "run")  # the reboot empties the tmpfs
    assert total(tmp_path).load() == 11


def test_a_slow_meter_loses_nothing_to_a_power_cut(tmp_path):
    clock = Clock()
    t = total(tmp_path, clock)
    t.load()
    for _ in range(5):
        clock.now += 120             # a gas meter: a pulse every two minutes
        t.add(1)
    shutil.rmtree(tmp_path / "run")
    assert total(tmp_path).load() == 5


def test_flash_writes_are_at_most_one_per_save_interval(tmp_path):
    clock = Clock()
    t = total(tmp_path, clock)
    t.load()
    for _ in range(3600):            # one pulse a second for an hour
        clock.now += 1
        t.add(1)
        if t.save_due_in() == 0:
            t.save()
    assert t.saves <= 61
    assert t.saves >= 59


def test_a_torn_write_spoils_one_slot_and_the_other_holds(tmp_path):
    clock = Clock()
    t = total(tmp_path, clock, save_interval=0)
    t.load()
    t.add(1)
    t.add(1)                         # slots: seq 1 -> total 1, seq 2 -> total 2
    t.close()
    shutil.rmtree(tmp_path / "run")
    record = tmp_path / "state" / "p.total"
    data = bytearray(record.read_bytes())
    data[0:8] = b"\xff" * 8          # the power went during the write of slot 0 (seq 2)
    record.write_bytes(bytes(data))
    assert total(tmp_path).load() == 1
    data[SLOT:SLOT + 8] = b"\x00" * 8
    record.write_bytes(bytes(data))
    assert total(tmp_path).load(initial=7) == 7   # both spoilt: as new (the log says so)


def test_a_failing_save_is_counted_retried_later_and_the_total_goes_on(tmp_path):
    clock = Clock()
    t = total(tmp_path, clock, save_interval=0)
    t.load()
    (tmp_path / "state").write_text("a file where the folder should be")
    t.add(1)
    t.add(1)                                     # (not tried again at once: no busy loop)
    assert t.save_errors == 1 and t.total == 2 and t.save_due_in() == SAVE_RETRY
    clock.now += SAVE_RETRY
    t.add(1)
    assert t.save_errors == 2 and t.total == 3
    (tmp_path / "state").unlink()
    assert total(tmp_path).load() == 3           # the mirror still has it


def test_an_unreadable_record_stops_the_start_rather_than_counting_from_0(tmp_path):
    (tmp_path / "state").write_text("a file where the folder should be")
    with pytest.raises(OSError):
        total(tmp_path).load()
