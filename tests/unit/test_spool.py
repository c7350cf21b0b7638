"""The spool: tiers, cursors, spilling, bounds, and recovery from every kind of damage."""

import errno
import logging

import pytest

from gateway.spool import journal
from gateway.spool import SPILL_CHUNK, BufferStats, Spool, SpoolSettings
from gateway.spool.storage import MemoryFiles
from gateway.frame import Frame


class Clock:
    def __init__(self, now=1_700_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


class FailingFiles(MemoryFiles):
    """A disk that can be full."""

    def __init__(self):
        super().__init__()
        self.full = False

    def append(self, name, data):
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        super().append(name, data)


def reading(i, clock):
    return Frame(i % 10, (i, 1.5), clock.now, None, None, "test")


class RecordingFiles(MemoryFiles):
    """A disk that notes the size of every write and every sync."""

    def __init__(self):
        super().__init__()
        self.appends, self.syncs = [], []

    def append(self, name, data):
        self.appends.append(len(data))
        super().append(name, data)

    def sync(self, name):
        self.syncs.append(name)


class Harness:
    def __init__(self, hot=None, cold=None, clock=None, **settings):
        self.hot = hot if hot is not None else MemoryFiles()
        self.cold = cold if cold is not None else MemoryFiles()
        self.clock = clock or Clock()
        self.settings = settings

    def start(self, *names):
        names = names or ("a",)
        self.spool = Spool(self.hot, self.cold, SpoolSettings(**self.settings), clock=self.clock)
        self.spool.open(names)
        self.cursors = {name: self.spool.register(name, BufferStats()) for name in names}
        return self.spool

    def accept(self, start, count, per_flush=10):
        """Accept readings, ``per_flush`` per event-loop iteration."""
        for i in range(start, start + count):
            self.spool.append(reading(i, self.clock))
            if (i + 1 - start) % per_flush == 0:
                self.spool.flush()
        self.spool.flush()

    def deliver(self, name="a", limit=100_000):
        """Take and acknowledge everything pending; returns the first values delivered."""
        cursor = self.cursors[name]
        out = []
        while True:
            batch = cursor.take(limit, block=False)
            if not batch:
                return out
            out.extend(int(f.values[0]) for f in batch)
            cursor.stats.delivered += len(batch)   # as the delivery engine does
            cursor.ack(len(batch))

    def crash(self):
        """kill -9: memory state is gone, files stay (the hot tier is a tmpfs)."""
        self.spool._stopping = True
        self.spool._spill_due.set()

    def reboot(self):
        """A reboot: the tmpfs is empty again."""
        self.crash()
        self.hot = MemoryFiles()


def accounting_ok(cursor):
    s = cursor.stats
    return s.accepted == s.delivered + len(cursor) + sum(s.dropped.values())


def test_healthy_destinations_cost_no_disk_writes():
    h = Harness()
    h.start()
    for round_ in range(20):
        h.accept(round_ * 50, 50)
        assert len(h.deliver()) == 50
        h.clock.now += 120
        h.spool.maintain()
    h.spool.close()
    assert h.cold.data == {}


def test_readings_unsent_for_spill_after_are_saved_in_one_compressed_frame():
    h = Harness(spill_after=60)
    h.start()
    h.accept(0, 100)
    h.clock.now += 30
    h.spool.maintain()
    assert not any(n.endswith(".seg") for n in h.cold.data)
    h.clock.now += 31
    h.spool.maintain()
    segments = [n for n in h.cold.data if n.endswith(".seg")]
    assert len(segments) == 1
    result = journal.scan(bytes(h.cold.data[segments[0]]))
    assert [(e.first_seq, e.count) for e in result.entries] == [(1, 100)]
    assert bytes(h.cold.data[segments[0]])[journal.HEADER.size - 1] & journal.FLAG_ZLIB
    assert h.spool.stats["spill_writes"] == 1
    # the next interval writes only what is new
    h.accept(100, 10)
    h.clock.now += 61
    h.spool.maintain()
    result = journal.scan(bytes(h.cold.data[segments[0]]))
    assert [(e.first_seq, e.count) for e in result.entries] == [(1, 100), (101, 10)]


def test_kill_9_keeps_everything_in_the_hot_tier_and_resumes_after_the_cursor():
    h = Harness()
    h.start()
    h.accept(0, 30)
    cursor = h.cursors["a"]
    batch = cursor.take(10, block=False)
    cursor.ack(len(batch))
    h.crash()
    h.start()
    assert h.deliver() == list(range(10, 30))
    assert h.cold.data == {}


def stop_with_50_for_b_only_then_reboot(h):
    """Buffer a has delivered 50 readings, b none; a clean stop and a reboot: only the disk
    is left."""
    h.start("a", "b")
    h.accept(0, 50)
    assert len(h.deliver("a")) == 50
    h.spool.close()
    h.reboot()


def test_clean_stop_saves_everything_unsent_so_a_reboot_loses_nothing():
    h = Harness()
    stop_with_50_for_b_only_then_reboot(h)
    h.start("a", "b")
    assert h.deliver("a") == []
    assert h.deliver("b") == list(range(50))
    h.accept(50, 5)   # sequence numbers continue after the recovered ones
    assert h.deliver("a") == list(range(50, 55))
    assert h.deliver("b") == list(range(50, 55))


def test_a_new_buffer_starts_at_the_head_not_with_old_readings():
    h = Harness()
    h.start("a")
    h.accept(0, 5)
    cursor = h.spool.register("late", BufferStats())
    h.cursors["late"] = cursor
    h.accept(5, 2)
    assert h.deliver("late") == [5, 6]


def test_torn_tail_is_truncated_and_earlier_readings_survive():
    h = Harness()
    h.start()
    h.accept(0, 20)
    h.accept(20, 20)
    h.spool.close()
    name = [n for n in h.hot.data if n.endswith(".seg")][0]
    del h.hot.data[name][-7:]   # the last frame torn mid-write
    h.cold = MemoryFiles()       # make the hot tier the only copy
    h.start()
    assert h.deliver() == list(range(30))       # frames of 10: only the last one was torn
    assert h.cursors["a"].stats.dropped["lost"] == 10
    assert len(h.hot.data[name]) == journal.scan(bytes(h.hot.data[name])).good_end


def test_bit_flip_loses_only_the_damaged_frame_and_counts_it():
    h = Harness(spill_after=0)
    h.start()
    for start in (0, 10, 20):
        h.accept(start, 10, per_flush=10)
        h.clock.now += 1
        h.spool.maintain()     # one cold frame per 10 readings
    h.spool.close()
    h.reboot()
    name = [n for n in h.cold.data if n.endswith(".seg")][0]
    entries = journal.scan(bytes(h.cold.data[name])).entries
    h.cold.data[name][entries[1].offset + journal.HEADER.size + 3] ^= 0x40
    h.start()
    cursor = h.cursors["a"]
    assert h.deliver() == list(range(10)) + list(range(20, 30))
    assert cursor.stats.dropped["lost"] == 10
    assert accounting_ok(cursor)


@pytest.mark.parametrize("damage", ["nul", "empty", "garbage"])
def test_unreadable_segment_is_set_aside_and_the_gateway_starts(damage):
    h = Harness()
    h.start()
    h.accept(0, 10)
    h.spool.close()
    h.reboot()
    name = [n for n in h.cold.data if n.endswith(".seg")][0]
    size = len(h.cold.data[name])
    h.cold.data[name] = bytearray({"nul": bytes(size), "empty": b"", "garbage": b"x" * size}[damage])
    h.start()
    h.accept(10, 3)
    assert h.deliver() == [10, 11, 12]
    assert h.cursors["a"].stats.dropped["lost"] == 10
    assert name not in h.cold.data
    if damage != "empty":
        assert h.cold.set_aside_names == [name]


def test_torn_cursor_write_falls_back_to_the_previous_one():
    h = Harness()
    h.start()
    h.accept(0, 10)
    cursor = h.cursors["a"]
    for _ in range(2):
        batch = cursor.take(3, block=False)
        cursor.ack(len(batch))
    h.crash()
    gen = h.spool.hot_cursors.generation
    h.hot.data["cursors"][(gen % 2) * 32768 + 30] ^= 0xFF   # the newest slot is damaged
    h.start()
    assert h.deliver() == list(range(3, 10))   # replays from the previous cursor: duplicates, no loss


def test_disk_full_keeps_delivering_from_memory_and_retries():
    cold = FailingFiles()
    h = Harness(cold=cold, spill_after=0)
    h.start()
    cold.full = True
    h.accept(0, 10)
    h.clock.now += 1
    h.spool.maintain()
    assert h.spool.stats["spill_errors"] == 1
    assert h.deliver() == list(range(10))
    cold.full = False
    h.accept(10, 5)
    h.clock.now += 600
    h.spool.maintain()
    assert h.spool.stats["spill_writes"] == 1
    assert accounting_ok(h.cursors["a"])


def test_cold_bound_drops_the_oldest_and_counts_them():
    h = Harness(spill_after=0, cold_max_bytes=1000, cold_segment_bytes=300)
    h.start()
    for start in range(0, 400, 20):
        h.accept(start, 20)
        h.clock.now += 1
        h.spool.maintain()
    cursor = h.cursors["a"]
    assert h.spool.cold.bytes <= 1000 + 300
    delivered = h.deliver()
    assert delivered == list(range(delivered[0], 400))
    assert cursor.stats.dropped["overflow"] == delivered[0] > 0
    assert accounting_ok(cursor)


def test_memory_only_spool_is_bounded_too():
    h = Harness(hot_max_bytes=4000, hot_segment_bytes=1000)
    h.cold = None
    h.spool = Spool(h.hot, None, SpoolSettings(**h.settings), clock=h.clock)
    h.spool.open()
    h.cursors = {"a": h.spool.register("a", BufferStats())}
    h.accept(0, 300)
    h.spool.maintain()
    assert h.spool.hot.bytes <= 4000
    delivered = h.deliver()
    assert delivered[-1] == 299 and delivered == list(range(delivered[0], 300))
    assert accounting_ok(h.cursors["a"])


def test_max_age_drops_old_readings():
    h = Harness(spill_after=0, max_age=3600, cold_segment_bytes=100)
    h.start()
    h.accept(0, 20)
    h.clock.now += 1
    h.spool.maintain()
    h.clock.now += 7200
    h.accept(20, 20)
    h.spool.maintain()
    delivered = h.deliver()
    assert delivered[0] > 0 and delivered[-1] == 39
    assert h.cursors["a"].stats.dropped["overflow"] == delivered[0]


def test_startup_checks_only_the_newest_segment():
    h = Harness(spill_after=0, cold_segment_bytes=300)
    h.start()
    for start in range(0, 100, 10):
        h.accept(start, 10)
        h.clock.now += 1
        h.spool.maintain()
    h.spool.close()
    h.reboot()
    spool = h.start()
    assert len(spool.cold.segments) > 3
    assert all(s.entries is None for s in spool.cold.segments[:-1])
    assert h.deliver() == list(range(100))


def segment_names(files):
    return sorted(n for n in files.data if n.endswith(".seg"))


# -- big backlogs, damage -------------------------------------------------------------------
def test_a_spill_of_any_size_goes_in_bounded_pieces_with_one_sync_per_file():
    cold = RecordingFiles()
    h = Harness(cold=cold, hot_max_bytes=64 * 1024 * 1024, hot_segment_bytes=8 * 1024 * 1024,
                cold_segment_bytes=64 * 1024 * 1024)
    h.start()
    h.accept(0, 70_000, per_flush=5_000)    # more than a 16-bit count could say
    h.spool.close()
    names = segment_names(cold)
    entries = journal.scan(bytes(cold.data[names[0]])).entries
    assert sum(e.count for e in entries) == 70_000 and max(e.count for e in entries) <= 256
    assert max(cold.appends) < SPILL_CHUNK * 100        # never the whole backlog at once
    assert cold.syncs.count(names[0]) == 1
    h.reboot()
    h.start()
    assert h.deliver() == list(range(70_000))


def test_a_full_hot_tier_spills_a_huge_backlog_and_stays_within_its_bound():
    h = Harness(hot_max_bytes=400_000, hot_segment_bytes=50_000)
    h.start()
    h.accept(0, 80_000, per_flush=80_000)   # one loop pass, ten times what the hot tier may hold
    h.spool.maintain()
    assert h.spool.hot.bytes <= 400_000 and h.spool.cold.bytes > 0
    cursor = h.cursors["a"]
    assert h.deliver() == list(range(80_000))
    assert sum(cursor.stats.dropped.values()) == 0 and accounting_ok(cursor)


def test_one_damaged_byte_costs_at_most_one_frame_of_256_readings():
    h = Harness(spill_after=0)
    h.start()
    h.accept(0, 3000, per_flush=100)
    h.spool.close()                                # one spill: 3000 readings in one segment
    [name] = segment_names(h.cold)
    disk = {n: bytes(data) for n, data in h.cold.data.items()}
    headers = [e.offset + i for e in journal.scan(disk[name]).entries[:2] for i in range(journal.HEADER.size)]
    worst = 0
    for position in sorted(set(headers + list(range(0, len(disk[name]), 97)) + [len(disk[name]) - 1])):
        h.hot, h.cold = MemoryFiles(), MemoryFiles()
        h.cold.data = {n: bytearray(data) for n, data in disk.items()}
        h.cold.data[name][position] ^= 0x01
        h.start()
        cursor = h.cursors["a"]
        delivered = h.deliver()
        lost = 3000 - len(delivered)
        assert delivered == sorted(set(delivered)) and cursor.stats.dropped["lost"] == lost, position
        assert accounting_ok(cursor)
        worst = max(worst, lost)
        h.crash()
    assert 0 < worst <= 256


# -- readers and the loop's pass -------------------------------------------------------------
def test_readers_see_readings_the_loop_has_not_written_yet_whatever_the_burst():
    h = Harness(tail_items=16)
    h.start()
    for i in range(100):   # one loop pass, far more readings than the tail holds
        h.spool.append(reading(i, h.clock))
        if i in (10, 60):
            assert h.deliver() == list(range(i + 1))[-(11 if i == 10 else 50):]
    assert h.deliver() == list(range(61, 100))
    h.spool.flush()
    h.crash()
    h.start()
    assert h.deliver() == []    # the place saved once the readings were written
    assert h.cursors["a"].stats.dropped["lost"] == 0


# -- a lost or damaged cursor file ----------------------------------------------------------
@pytest.mark.parametrize("damage", ["delete", "nul"])
def test_lost_cursor_file_sends_everything_held_again_and_counts_it(damage, caplog):
    h = Harness()
    stop_with_50_for_b_only_then_reboot(h)
    if damage == "delete":
        del h.cold.data["cursors"]
    else:
        h.cold.data["cursors"] = bytearray(len(h.cold.data["cursors"]))
    with caplog.at_level(logging.WARNING):
        h.start("a", "b")
    replays = [r for r in caplog.records if "sent again" in r.getMessage()]
    assert len(replays) == 1 and "the 50 readings still held" in replays[0].getMessage()
    assert h.deliver("a") == list(range(50)) and h.deliver("b") == list(range(50))
    for cursor in h.cursors.values():
        assert cursor.stats.replayed == 50 and accounting_ok(cursor)
    h.cursors["late"] = h.spool.register("late", BufferStats())   # added by a config reload
    h.accept(50, 2)
    assert h.deliver("late") == [50, 51]


def test_a_buffer_whose_place_survives_in_the_other_tier_keeps_it():
    h = Harness(spill_after=0)
    h.start("a", "b")
    h.accept(0, 30)
    h.spool.maintain()                      # saved to disk with the places of a and b
    assert len(h.deliver("a")) == 30
    h.crash()
    del h.hot.data["cursors"]               # the newer places are lost
    h.start("a", "b")
    assert h.deliver("a") == list(range(30))    # the disk's older place: duplicates only
    assert h.deliver("b") == list(range(30))
    assert h.cursors["a"].stats.replayed == 0


def test_replay_skips_what_was_never_saved_instead_of_counting_it_lost():
    h = Harness(spill_after=0)
    h.start()
    h.accept(0, 10)
    h.spool.maintain()   # saved to disk
    h.accept(10, 10)
    h.deliver()          # all 20 delivered: 10..19 never reach the disk
    h.accept(20, 10)
    h.spool.close()      # saved after the first ten, in the same segment
    h.reboot()
    del h.cold.data["cursors"]
    h.start()
    cursor = h.cursors["a"]
    assert len(cursor) == 20
    assert h.deliver() == list(range(10)) + list(range(20, 30))
    assert cursor.stats.dropped["lost"] == 0 and cursor.stats.replayed == 20 and accounting_ok(cursor)


def test_an_empty_spool_without_cursor_file_is_no_replay(caplog):
    h = Harness()
    with caplog.at_level(logging.WARNING):
        h.start()
    assert not caplog.records
    h.accept(0, 3)
    assert h.deliver() == [0, 1, 2]


# -- whom readings are kept for --------------------------------------------------------------
def test_an_inactive_buffer_holding_nothing_keeps_nothing_back():
    h = Harness(spill_after=0)
    h.start("a", "off")
    h.spool.set_recording(h.cursors["off"], False)
    for start in range(0, 100, 20):
        h.accept(start, 20)
        h.deliver("a")
        h.spool.maintain()
    assert len(h.cursors["off"]) == 0 and h.cursors["off"].stats.accepted == 0
    assert segment_names(h.cold) == [] and segment_names(h.hot) == []
    h.spool.close()
    h.start("a", "off")
    h.spool.set_recording(h.cursors["off"], False)
    assert len(h.cursors["off"]) == 0


def test_an_inactive_buffer_keeps_its_backlog_across_a_restart():
    h = Harness()
    h.start("a", "off")
    h.accept(0, 10)
    h.spool.set_recording(h.cursors["off"], False)
    h.accept(10, 20)
    assert len(h.cursors["off"]) == 10
    h.crash()
    h.start("a", "off")
    h.spool.set_recording(h.cursors["off"], False)
    h.accept(30, 5)
    assert len(h.cursors["off"]) == 10
    h.spool.set_recording(h.cursors["off"], True)
    h.accept(35, 2)
    assert h.deliver("off") == list(range(10)) + [35, 36]
    assert accounting_ok(h.cursors["off"])


def test_buffers_no_longer_configured_are_forgotten_at_start(caplog):
    h = Harness()
    h.start("a", "gone")
    h.accept(0, 20)
    assert len(h.deliver("a")) == 20
    h.spool.close()
    with caplog.at_level(logging.INFO):
        h.start("a")
    assert [r.getMessage() for r in caplog.records if "gone" in r.getMessage()] == [
        "buffer 'gone': 20 readings dropped: the buffer was removed from the config"]
    h.spool.maintain()
    assert segment_names(h.hot) == [] and segment_names(h.cold) == []
    h.spool.close()
    caplog.clear()
    h.reboot()                     # the copy on disk forgot it too
    with caplog.at_level(logging.INFO):
        h.start("a")
    assert not [r for r in caplog.records if "gone" in r.getMessage()]


def test_a_buffer_removed_while_running_has_its_readings_counted_as_removed():
    h = Harness()
    h.start("a", "gone")
    h.accept(0, 20)
    gone = h.cursors["gone"]
    gone.forget()
    gone.forget()   # once only
    assert gone.stats.dropped["removed"] == 20 and len(gone) == 0 and accounting_ok(gone)
    h.deliver("a")
    h.spool.maintain()
    assert segment_names(h.hot) == []
