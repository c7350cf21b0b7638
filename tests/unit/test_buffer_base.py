"""What every buffer gets from the delivery engine: queueing, batching, splitting, retries, counts."""

import logging
import random
import threading
import time

import pytest

from buffers.base import AuthError, Buffer, RejectedError, TooLargeError, TransientError
from gateway.delivery import Delivery
from gateway.spool import BufferStats, Spool, SpoolSettings
from gateway.spool.storage import MemoryFiles
from gateway.frame import Frame

SETTINGS = {"active": True, "max_items": 0, "batch_size": 100, "retry_max": 0.05}


def frame(node, *values, t=1700000000.0):
    return Frame(node, values or (1,), t, None, None, "test")


class Recorder(Buffer):
    """A destination in memory: ``fail`` decides per batch what goes wrong. It comes with the
    engine delivering to it (``engine``), whose attributes it shows as its own."""

    def __init__(self, name="rec", settings=None, fail=None):
        self.fail = fail or (lambda batch: None)
        self.delivered = []
        self.batches = []
        self.cond = threading.Condition()
        spool = Spool(MemoryFiles(), None, SpoolSettings())
        spool.open()
        super().__init__(name, dict(SETTINGS, **(settings or {})))
        self.engine = Delivery(self, spool.register(name, BufferStats()))

    def __getattr__(self, name):   # start, stop, queue, stats...: the engine's
        if name == "engine":
            raise AttributeError(name)
        return getattr(self.engine, name)

    def put(self, f):
        """What the gateway does with a frame from a listener."""
        self.queue.spool.append(f)

    def send(self, batch):
        with self.cond:
            self.batches.append([f.node for f in batch])
            self.cond.notify_all()
        error = self.fail(batch)
        if error:
            raise error
        with self.cond:
            self.delivered.extend(batch)
            self.cond.notify_all()

    def wait_delivered(self, n, timeout=30):
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.delivered) >= n, timeout), self.delivered
        return [f.node for f in self.delivered]


@pytest.fixture
def started():
    buffers = []

    def start(buffer):
        buffer.start()
        buffers.append(buffer)
        return buffer

    yield start
    for buffer in buffers:
        buffer.stop(time.monotonic())
        buffer.join(5)


def finish(buffer):
    """Stop the sender and wait for it, so everything it does after a send has happened."""
    buffer.stop(time.monotonic() + 30)
    assert buffer.join(30) == 0


def assert_accounting(buffer):
    stats = buffer.stats
    assert stats.accepted == stats.delivered + len(buffer.queue) + sum(stats.dropped.values())


def test_delivers_in_order_in_batches(started):
    buffer = Recorder(settings={"batch_size": 7})
    for i in range(20):
        buffer.put(frame(i))
    started(buffer)
    assert buffer.wait_delivered(20) == list(range(20))
    assert max(len(b) for b in buffer.batches) == 7
    finish(buffer)
    assert_accounting(buffer)


def test_a_refused_reading_is_found_and_dropped_without_blocking_the_rest(started, caplog):
    def refuse_bad(batch):
        if any(f.node == "bad" for f in batch):
            return RejectedError("Format error")

    buffer = Recorder(fail=refuse_bad)
    nodes = [1, 2, 3, 4, 5, "bad", 7, 8, 9, 10, 11]
    for node in nodes:
        buffer.put(frame(node))
    with caplog.at_level(logging.WARNING):
        started(buffer)
        assert buffer.wait_delivered(10) == [n for n in nodes if n != "bad"]
    assert "refuses (node bad" in caplog.text and "Format error" in caplog.text
    # after the search, batches are whole again
    buffer.put(frame(12))
    buffer.put(frame(13))
    buffer.wait_delivered(12)
    finish(buffer)
    assert buffer.stats.dropped["rejected"] == 1
    assert buffer.stats.delivered == 12
    assert_accounting(buffer)


def test_transient_failures_are_retried_until_delivered(started):
    failures = iter([TransientError("down")] * 4)
    buffer = Recorder(fail=lambda batch: next(failures, None))
    buffer.put(frame(1))
    buffer.put(frame(2))
    started(buffer)
    assert buffer.wait_delivered(2) == [1, 2]
    finish(buffer)
    assert buffer.stats.retries == 4
    assert buffer.stats.last_error == "down"
    assert buffer.state == "ok"


def test_auth_failure_keeps_everything_and_logs_once(started, caplog):
    failures = iter([AuthError("bad key")] * 3)
    buffer = Recorder(fail=lambda batch: next(failures, None))
    buffer.put(frame(1))
    with caplog.at_level(logging.INFO):
        started(buffer)
        assert buffer.wait_delivered(1) == [1]
        finish(buffer)
    assert caplog.text.count("bad key") == 1
    assert "delivering again" in caplog.text


def test_too_large_halves_the_batch(started):
    buffer = Recorder(fail=lambda batch: TooLargeError("414") if len(batch) > 3 else None)
    for i in range(10):
        buffer.put(frame(i))
    started(buffer)
    assert buffer.wait_delivered(10) == list(range(10))


def test_check_drops_readings_the_plugin_knows_are_unsendable(started):
    class Picky(Recorder):
        def check(self, f):
            return "too big" if f.values[0] > 100 else None

    buffer = Picky()
    for value in (1, 1000, 2):
        buffer.put(frame(value, value))
    started(buffer)
    assert buffer.wait_delivered(2) == [1, 2]
    finish(buffer)
    assert buffer.stats.dropped["rejected"] == 1
    assert_accounting(buffer)


def test_overflow_drops_oldest_and_counts(caplog):
    buffer = Recorder(settings={"max_items": 5})
    with caplog.at_level(logging.WARNING):
        for i in range(12):
            buffer.put(frame(i))
    assert [f.node for f in buffer.queue.take(10)] == [7, 8, 9, 10, 11]
    assert buffer.stats.dropped["overflow"] == 7
    assert caplog.text.count("1 reading dropped") == 1   # (of the drop log's first line)
    assert_accounting(buffer)


def test_inactive_buffer_records_nothing_and_keeps_what_it_holds(started):
    buffer = Recorder(fail=lambda batch: TransientError("down"))
    buffer.put(frame(1))
    started(buffer)
    buffer.update(dict(SETTINGS, active=False))
    buffer.put(frame(2))
    assert buffer.stats.accepted == 1
    assert len(buffer.queue) == 1
    buffer.fail = lambda batch: None
    buffer.update(dict(SETTINGS, active=True))
    buffer.put(frame(3))
    assert buffer.wait_delivered(2) == [1, 3]
    finish(buffer)
    assert_accounting(buffer)


def test_stop_delivers_what_is_queued_before_the_deadline(started):
    buffer = Recorder()
    for i in range(50):
        buffer.put(frame(i))
    started(buffer)
    buffer.stop(time.monotonic() + 30)
    assert buffer.join(30) == 0
    assert [f.node for f in buffer.delivered] == list(range(50))


def test_stop_gives_up_at_the_deadline_when_the_destination_is_down(started):
    buffer = Recorder(settings={"retry_max": 30}, fail=lambda batch: TransientError("down"))
    buffer.put(frame(1))
    started(buffer)
    buffer.stop(time.monotonic() + 0.2)
    assert buffer.join(30) == 1


def test_a_single_reading_too_large_to_send_is_dropped_not_retried_forever(started):
    buffer = Recorder(fail=lambda batch: TooLargeError("413") if any(f.node == "huge" for f in batch) else None)
    for node in (1, "huge", 2):
        buffer.put(frame(node))
    started(buffer)
    assert buffer.wait_delivered(2) == [1, 2]
    finish(buffer)
    assert buffer.stats.dropped["rejected"] == 1
    assert_accounting(buffer)


def sizes(buffer):
    with buffer.cond:
        return [len(b) for b in buffer.batches]


def refuses_unnamed(bad):
    """A destination that keeps nothing of a batch holding a reading of ``bad`` and does not
    say which reading it refuses."""
    return lambda batch: RejectedError("no") if any(f.node in bad for f in batch) else None


def one_bad_per(block, readings, seed=1):
    """One bad reading at a random place in each block of ``block`` readings."""
    rng = random.Random(seed)
    return {start + rng.randrange(block) for start in range(0, readings, block)}


def test_a_reading_refused_unnamed_is_found_and_full_batches_follow_at_once_where_refusals_are_rare(started):
    """The destination keeps nothing of a refused batch and does not say which reading: the
    engine searches in pieces of about sqrt(batch); as soon as the reading is alone and refused
    it is dropped, and when refusals are rare (here two in 6,000 readings, after 3,000 clean
    ones) the very next batch is full again."""
    bad = {3137, 5610}
    buffer = Recorder(settings={"batch_size": 50}, fail=refuses_unnamed(bad))
    for i in range(6000):
        buffer.put(frame(i))
    started(buffer)
    assert buffer.wait_delivered(5998) == [i for i in range(6000) if i not in bad]
    finish(buffer)
    assert buffer.stats.dropped["rejected"] == 2 and buffer.stats.delivered == 5998
    with buffer.cond:
        after_drop = [buffer.batches[i + 1] for i, b in enumerate(buffer.batches[:-1])
                      if len(b) == 1 and b[0] in bad]
    assert [(batch[0], len(batch)) for batch in after_drop] == [(3138, 50), (5611, 50)]
    # each search sends the refused batch's readings again once, and a few more: not 2 x 50
    assert sum(sizes(buffer)) - 6000 <= 2 * (50 + 10)


def test_frequent_unnamed_refusals_make_batches_small_enough_that_few_rows_go_twice(started):
    """One bad reading in 1,000, refused without naming it: with full batches of 500 each one
    would cost its whole batch again (1.5 rows sent per reading); the engine learns the rate and
    sends batches small enough that at most 1.1 rows go per reading, none stored twice."""
    bad = one_bad_per(1000, 20000)
    buffer = Recorder(settings={"batch_size": 500}, fail=refuses_unnamed(bad))
    for i in range(20000):
        buffer.put(frame(i))
    started(buffer)
    assert buffer.wait_delivered(20000 - len(bad)) == [i for i in range(20000) if i not in bad]
    finish(buffer)
    assert (buffer.stats.delivered, buffer.stats.dropped["rejected"]) == (20000 - len(bad), len(bad))
    sent = sizes(buffer)
    assert sum(sent) <= 1.1 * 20000
    assert sent[0] == 500 and max(sent[len(sent) // 2:]) < 100   # small once the rate is known
    assert_accounting(buffer)


def test_frequent_named_refusals_make_batches_small_enough_that_few_rows_go_twice(started):
    """The same rate, refused the emoncms way (the rows in front stored, the refused one named):
    the rows behind it in its batch go again, half a batch on average; with 500 that is 1.25
    rows per reading, with the learned size at most 1.1. Nothing stored is sent again."""
    bad = one_bad_per(1000, 20000)
    buffer = StoresUpToRefused(lambda f, i: RejectedError("Out of range", delivered=i) if f.node in bad else None,
                               settings={"batch_size": 500})
    for i in range(20000):
        buffer.put(frame(i))
    started(buffer)
    finish(buffer)
    assert [f.node for f in buffer.delivered] == [i for i in range(20000) if i not in bad]
    sent = sizes(buffer)
    assert sum(sent) <= 1.1 * 20000
    assert sent[0] == 500 and max(sent[len(sent) // 2:]) < 200
    assert_accounting(buffer)


def test_batches_grow_back_to_full_once_refusals_stop(started):
    """One bad reading in 20 for 2,000 readings: batches go down to the floor of 10; then none
    is bad and they grow back, step by step, to the full 50."""
    bad = one_bad_per(20, 2000)
    buffer = Recorder(settings={"batch_size": 50}, fail=refuses_unnamed(bad))
    for i in range(24000):
        buffer.put(frame(i))
    started(buffer)
    buffer.wait_delivered(24000 - len(bad))
    with buffer.cond:
        batches = [(b[0], len(b)) for b in buffer.batches]
    during = [size for head, size in batches if head < 2000]
    after = [size for head, size in batches if head > max(bad)][:-1]   # not the tail
    assert min(during) == 1 and 10 in during and max(during[len(during) // 2:]) < 50
    assert after == sorted(after) and after[0] < 50 and after[-1] == 50
    finish(buffer)
    assert_accounting(buffer)


def test_the_refusal_rate_is_kept_for_the_next_backlog_and_forgotten_when_the_settings_change(started):
    """What was learned about the destination holds for the next backlog; a settings change
    (another server, perhaps) starts afresh: full batches at once."""
    bad = one_bad_per(20, 2000)
    gate = threading.Event()
    gate.set()

    def refuses_after_the_gate(batch):
        gate.wait(30)
        return RejectedError("no") if any(f.node in bad for f in batch) else None

    buffer = Recorder(settings={"batch_size": 50}, fail=refuses_after_the_gate)
    for i in range(2000):
        buffer.put(frame(i))
    started(buffer)
    delivered = buffer.wait_delivered(2000 - len(bad))

    def next_backlog(first, change_settings=False):
        """One reading goes out and is held at the gate while 100 more queue up behind it."""
        gate.clear()
        buffer.put(frame(f"gate {first}"))
        with buffer.cond:
            assert buffer.cond.wait_for(lambda: buffer.batches[-1] == [f"gate {first}"], 30)
        for i in range(first, first + 100):
            buffer.put(frame(i))
        if change_settings:
            buffer.update(dict(SETTINGS, batch_size=50))
        gate.set()
        buffer.wait_delivered(len(delivered) + 101)
        delivered.extend(range(101))
        return sizes(buffer)[-2:] if change_settings else sizes(buffer)[-10:]

    assert next_backlog(2000) == [10] * 10
    assert next_backlog(3000, change_settings=True) == [50, 50]
    finish(buffer)
    assert_accounting(buffer)


class StoresUpToRefused(Recorder):
    """A destination that, like emoncms, stores the readings in front of the first one it
    refuses, and names it: ``refuses(frame)`` gives the RejectedError for a refused reading."""

    def __init__(self, refuses, **kwargs):
        super().__init__(**kwargs)
        self.refuses = refuses

    def send(self, batch):
        for i, f in enumerate(batch):
            error = self.refuses(f, i)
            if error:
                with self.cond:
                    self.batches.append([x.node for x in batch])
                    self.delivered.extend(batch[:i])
                    self.cond.notify_all()
                raise error
        super().send(batch)


def test_a_refusal_naming_the_reading_keeps_what_was_stored_and_sends_full_batches(started):
    """emoncms' way: the rows in front of the refused one are stored; they are delivered, never
    sent again, and (refusals being rare: one after 3,000 clean readings) the next batch starts
    right after the refused reading, full."""
    buffer = StoresUpToRefused(
        lambda f, i: RejectedError("Out of range value", delivered=i) if f.node == 3042 else None,
        settings={"batch_size": 50})
    for i in range(3120):
        buffer.put(frame(i))
    started(buffer)
    finish(buffer)
    assert [f.node for f in buffer.delivered] == [i for i in range(3120) if i != 3042]
    assert [b[0] for b in buffer.batches][-4:] == [2950, 3000, 3043, 3093]
    assert sizes(buffer)[-4:] == [50, 50, 50, 27] and sum(sizes(buffer)) == 3120 + 7
    assert (buffer.stats.delivered, buffer.stats.dropped["rejected"]) == (3119, 1)
    assert buffer.rejected_by_node == {"3042": 1}


def test_a_refused_node_is_not_sent_until_forgotten_or_the_settings_change(started, caplog):
    clock = [1000.0]
    buffer = StoresUpToRefused(lambda f, i: RejectedError("Node '9' was ignored", delivered=i, node_refused=True)
                               if f.node == 9 else None)
    buffer.engine.monotonic = lambda: clock[0]
    started(buffer)

    def round_of(n):
        for node in (1, 9, 2):
            buffer.put(frame(node, n))

    with caplog.at_level(logging.INFO):
        round_of(0)
        buffer.wait_delivered(2)
        round_of(1)
        round_of(2)
        buffer.wait_delivered(6)
        clock[0] += Delivery.NODE_REFUSAL_MEMORY   # forgotten: tried again, refused again
        round_of(3)
        buffer.wait_delivered(8)
        buffer.update(dict(SETTINGS))            # a settings change forgets it at once
        round_of(4)
        buffer.wait_delivered(10)
        finish(buffer)
    with buffer.cond:
        tried = sum(1 for b in buffer.batches if 9 in b)
    assert tried == 3
    assert buffer.rejected_by_node == {"9": 5}
    assert "node 9 is refused by the destination" in caplog.text
    assert_accounting(buffer)


def test_while_failing_each_attempt_is_one_reading_then_full_batches_again(started):
    failures = iter([TransientError("down")] * 5)
    buffer = Recorder(fail=lambda batch: next(failures, None))
    for i in range(100):
        buffer.put(frame(i))
    started(buffer)
    assert buffer.wait_delivered(100) == list(range(100))
    assert sizes(buffer) == [100, 1, 1, 1, 1, 1, 99]


def test_a_size_found_too_large_stays_the_limit(started):
    buffer = Recorder(fail=lambda batch: TooLargeError("413") if len(batch) > 30 else None)
    for i in range(100):
        buffer.put(frame(i))
    started(buffer)
    buffer.wait_delivered(100)
    for i in range(100, 200):
        buffer.put(frame(i))
    assert buffer.wait_delivered(200) == list(range(200))
    assert sizes(buffer)[:3] == [100, 50, 25] and max(sizes(buffer)[2:]) == 25
