"""A model-based test of the delivery engine (gateway/delivery.py): a scripted destination answers
every attempt with a random outcome of every kind the contract has, and afterwards the books
must balance reading by reading.

The destination keeps the truth: which readings it stored, how often. It stores the rows in
front of a bad reading and names it (as emoncms does), keeps nothing of a request it refuses
without naming a reading or finds too large, fails with server trouble (nothing stored), with
a lost reply (everything stored, the answer lost), with a refused key, with a bug in the plugin,
and refuses whole nodes. The plugin's ``check()`` knows some readings can never be sent.

Checked for every seed, once the queue is empty:
* accepted = delivered + queued + dropped, no reading counted twice, and each bucket holds the
  right readings: delivered = stored, rejected = bad + unsendable + of a refused node; with a
  bound (max_items) that drops readings meanwhile, even while they are being sent, those are
  counted by the spool alone, as overflow;
* no reading stored twice, except inside a batch whose reply was lost.
"""

import random

import pytest

from buffers.base import AuthError, Buffer, RejectedError, TooLargeError, TransientError
from gateway.delivery import Delivery
from gateway.spool import BufferStats, Spool, SpoolSettings
from gateway.spool.storage import MemoryFiles
from gateway.frame import Frame

REFUSED_NODE = 7   # the destination refuses this node's readings


class CountingDelivery(Delivery):
    """The engine, noting in which bucket it counts each reading (``plugin.counted``)."""

    AUTH_RETRY_FACTOR = 1

    def _count_delivered(self, frames):
        for frame in frames:
            self.plugin.counted.setdefault(self.plugin.number(frame), []).append("delivered")
        super()._count_delivered(frames)

    def _count_rejected(self, frame, why):
        self.plugin.counted.setdefault(self.plugin.number(frame), []).append("rejected")
        super()._count_rejected(frame, why)


class ScriptedDestination(Buffer):
    """A buffer whose destination is a random script; readings carry their number as value.
    It comes with the engine delivering to it (``engine``), whose attributes it shows as its own."""

    def __init__(self, rng: random.Random, settings: dict):
        self.rng = rng
        self.stored = {}          # reading number -> times stored
        self.may_repeat = set()   # readings of a batch whose reply was lost
        self.counted = {}         # reading number -> buckets the engine counted it in
        self.arrive = None        # called during a send: readings that arrive meanwhile
        self.too_large_above = rng.choice([None, 40, 7])
        self.trouble = 1.0        # share of attempts that may meet server trouble
        spool = Spool(MemoryFiles(), None, SpoolSettings())
        spool.open()
        super().__init__("model", settings)
        self.engine = CountingDelivery(self, spool.register("model", BufferStats()))
        self.engine.queue.wait = lambda timeout: False   # retries at once: the model has no clock

    def __getattr__(self, name):   # queue, stats, _deliver...: the engine's
        if name == "engine":
            raise AttributeError(name)
        return getattr(self.engine, name)

    @staticmethod
    def number(frame: Frame) -> int:
        return int(frame.values[0])

    @staticmethod
    def bad(frame: Frame) -> bool:
        return frame.values[1] == 1

    @staticmethod
    def unsendable(frame: Frame) -> bool:
        return frame.values[1] == 2

    def check(self, frame):
        return "never sendable" if self.unsendable(frame) else None

    def _store(self, frames):
        for frame in frames:
            self.stored[self.number(frame)] = self.stored.get(self.number(frame), 0) + 1

    def send(self, batch):
        assert batch and not any(self.unsendable(f) for f in batch)
        if self.arrive and self.rng.random() < 0.3:
            self.arrive()
        roll = self.rng.random()
        if self.trouble < 1 and self.rng.random() >= self.trouble:
            roll = 1.0   # no trouble this time
        if roll < 0.08:
            raise TransientError("server trouble")
        if roll < 0.11:
            raise AuthError("key refused")
        if roll < 0.13:
            raise ValueError("a bug in the plugin")
        if self.too_large_above and len(batch) > self.too_large_above:
            raise TooLargeError("413")
        first_bad = next((i for i, f in enumerate(batch)
                          if self.bad(f) or f.node == REFUSED_NODE), None)
        if first_bad is not None:
            if self.rng.random() < 0.5 and not batch[first_bad].node == REFUSED_NODE:
                raise RejectedError("refused, no reading named")   # nothing stored
            self._store(batch[:first_bad])
            raise RejectedError("refused", delivered=first_bad,
                                node_refused=batch[first_bad].node == REFUSED_NODE)
        self._store(batch)
        if roll < 0.17:
            self.may_repeat.update(self.number(f) for f in batch)
            raise TransientError("no answer within 10 s")   # the reply was lost


def run_model(seed: int, readings: int, settings: dict, mix=lambda number: (0.9, 0.05, 0.05),
              trouble: float = 1.0):
    """Readings arrive in bursts, between attempts and during them (as they do from the loop
    thread while the sender thread waits for an answer). ``mix(number)``: the odds of reading
    ``number`` being good, bad or unsendable; ``trouble``: the share of attempts that may fail
    for other reasons. Returns the buffer, the kind of each reading, and the smallest batch
    size the refusal rate gave."""
    rng = random.Random(seed)
    buffer = ScriptedDestination(rng, dict({"active": True, "max_items": 0, "batch_size": 50,
                                            "retry_max": 0.01}, **settings))
    buffer.trouble = trouble
    kinds = {}

    def arrive():
        for _ in range(rng.randint(1, 60)):
            if len(kinds) == readings:
                return
            number = len(kinds)
            kind = rng.choices([0, 1, 2], mix(number))[0]   # good, bad, unsendable
            node = REFUSED_NODE if rng.random() < 0.05 else rng.randint(1, 5)
            kinds[number] = "refused" if node == REFUSED_NODE and kind != 2 else kind
            buffer.queue.spool.append(Frame(node, (number, kind), 1.7e9 + number, None, None, "m"))

    buffer.arrive = arrive
    smallest = buffer.settings["batch_size"]
    while len(kinds) < readings or len(buffer.queue):
        if len(kinds) < readings and (not len(buffer.queue) or rng.random() < 0.3):
            arrive()
            continue
        smallest = min(smallest, buffer._refusals.batch_size())
        batch = buffer.queue.take(buffer._batch_limit(), block=False)
        if batch:
            buffer._deliver(batch)
    return buffer, kinds, smallest


def assert_books_balance(buffer, kinds):
    stats = buffer.stats
    assert len(buffer.queue) == 0
    assert stats.accepted == len(kinds)
    assert stats.accepted == stats.delivered + len(buffer.queue) + sum(stats.dropped.values())
    assert [n for n, buckets in buffer.counted.items() if len(buckets) > 1] == []
    delivered = {n for n, buckets in buffer.counted.items() if buckets == ["delivered"]}
    rejected = {n for n, buckets in buffer.counted.items() if buckets == ["rejected"]}
    assert stats.delivered == len(delivered) and stats.dropped["rejected"] == len(rejected)
    assert sum(buffer.rejected_by_node.values()) == len(rejected)
    twice = [n for n, times in buffer.stored.items() if times > 1 and n not in buffer.may_repeat]
    assert twice == []
    assert delivered <= set(buffer.stored)
    # the engine never counted those a bound dropped (the spool counted them, as overflow);
    # some may have been stored meanwhile: the bound gave up on them first
    by_bound = set(kinds) - delivered - rejected
    assert len(by_bound) == stats.dropped["overflow"]
    assert set(buffer.stored) - delivered <= buffer.may_repeat | by_bound
    never = {n for n, kind in kinds.items() if kind in (1, 2, "refused")}
    assert rejected <= never
    if not stats.dropped["overflow"]:
        assert delivered == set(kinds) - never and rejected == never


@pytest.mark.parametrize("seed", range(40))
def test_every_reading_is_counted_once_in_the_right_bucket(seed):
    buffer, kinds, _ = run_model(seed, 400, {})
    assert_books_balance(buffer, kinds)


@pytest.mark.parametrize("seed", range(10))
def test_the_books_balance_when_a_bound_drops_readings_meanwhile(seed):
    buffer, kinds, _ = run_model(1000 + seed, 400, {"max_items": 30})
    assert buffer.stats.dropped["overflow"]
    assert_books_balance(buffer, kinds)


def refusal_phases(number):
    """Clean, then one bad reading in 50 (some unsendable too), then clean again."""
    return (0.97, 0.02, 0.01) if 1500 <= number < 3000 else (1, 0, 0)


@pytest.mark.parametrize("seed", range(8))
def test_the_books_balance_while_batch_sizes_follow_the_refusal_rate(seed):
    """Long stretches with and without refusals, in backlogs, with some server trouble: the
    batch size the engine learns from the refusals goes down (towards the floor of 10) and up,
    and every reading is still counted once in the right bucket, none stored twice."""
    buffer, kinds, smallest = run_model(2000 + seed, 4500, {"batch_size": 200},
                                        mix=refusal_phases, trouble=0.25)
    assert smallest <= 20
    assert_books_balance(buffer, kinds)


@pytest.mark.parametrize("seed", range(4))
def test_the_books_balance_when_a_bound_drops_readings_while_batch_sizes_follow_refusals(seed):
    buffer, kinds, _ = run_model(3000 + seed, 4500, {"batch_size": 200, "max_items": 200},
                                 mix=refusal_phases, trouble=0.25)
    assert buffer.stats.dropped["overflow"]
    assert_books_balance(buffer, kinds)
