"""A model-based test of the spool: random accepts, deliveries, failures, clock ticks, crashes,
power cuts, damage and a full disk, checked against what the spool promises.

The event loop appends readings one by one and writes them out at the end of its pass; the
buffers' sender threads read at any moment. So appends, the end of a pass and deliveries are
separate rules, and a delivery may come between two appends of one pass, before its readings
are written anywhere; passes may hold more readings than the spool keeps in its in-memory
tail (``tail_items`` is made small for that).

The cold tier runs on ``DiskModel``, which keeps apart the bytes a power cut would keep (those
synced, in files whose names were synced) from those it would lose; the hot tier is a tmpfs,
kept by a process crash and emptied by a power cut.
"""

import errno
import os

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gateway.spool import BufferStats, Spool, SpoolSettings
from gateway.spool.storage import MemoryFiles
from gateway.frame import Frame


class DiskModel(MemoryFiles):
    def __init__(self):
        super().__init__()
        self.durable = {}          # name -> bytes a power cut keeps
        self.durable_names = set()
        self.full = False

    def append(self, name, data):
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        super().append(name, data)

    def pwrite(self, name, offset, data):
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        super().pwrite(name, offset, data)

    def sync(self, name):
        self.durable[name] = bytes(self.data[name])

    def sync_dir(self):
        self.durable_names = set(self.data)

    def power_cut(self):
        self.data = {n: bytearray(self.durable.get(n, b"")) for n in self.durable_names}
        self.durable = {n: b for n, b in self.durable.items() if n in self.durable_names}


class Destination:
    """What the model knows of one buffer: the readings it was promised and what it got."""

    def __init__(self, name):
        self.name = name
        self.active = True
        self.cursor = None
        self.must_arrive = set()     # ids the spool may not lose for it
        self.delivered = []          # ids in delivery order, across restarts
        self.last_in_run = -1

    def keep(self, predicate):
        """After a crash or damage: only delivered ids and those ``predicate`` keeps are owed."""
        delivered = set(self.delivered)
        self.must_arrive = {i for i in self.must_arrive if i in delivered or predicate(i)}


class SpoolMachine(RuleBasedStateMachine):
    """Buffer "a" is always active; buffer "b" is switched inactive and back at random."""

    def __init__(self):
        super().__init__()
        self.now = 1_700_000_000.0
        self.hot = MemoryFiles()
        self.cold = DiskModel()
        self.next_id = 0
        self.seq_of = {}             # reading id -> sequence number
        self.dests = {name: Destination(name) for name in ("a", "b")}
        self.power_cuts = 0
        self.damaged = False
        self.start()

    # -- helpers ------------------------------------------------------------------------
    def start(self):
        self.spool = Spool(self.hot, self.cold, SpoolSettings(spill_after=30, spill_interval=60,
                                                              cold_segment_bytes=2000, tail_items=8),
                           clock=lambda: self.now)
        self.spool.open(self.dests)
        for dest in self.dests.values():
            dest.cursor = self.spool.register(dest.name, BufferStats())
            self.spool.set_recording(dest.cursor, dest.active)   # as the buffer does at start
            dest.last_in_run = -1

    def stop_threads(self):
        self.spool._stopping = True
        self.spool._spill_due.set()
        self.spool._thread.join()

    def teardown(self):
        self.stop_threads()

    # -- rules --------------------------------------------------------------------------
    @rule(count=st.integers(1, 30))
    def accept(self, count):
        """The loop thread accepts readings; its pass is not over yet (nothing written)."""
        for _ in range(count):
            seq = self.spool.append(Frame(1, (self.next_id,), self.now, None, None, "t"))
            self.seq_of[self.next_id] = seq
            for dest in self.dests.values():
                if dest.active:
                    dest.must_arrive.add(self.next_id)
            self.next_id += 1

    @rule()
    def end_of_loop_pass(self):
        self.spool.flush()

    @rule(name=st.sampled_from(["a", "b"]), limit=st.integers(1, 50), succeed=st.booleans())
    def deliver(self, name, limit, succeed):
        """A sender thread, at any moment: between two appends of one loop pass too."""
        dest = self.dests[name]
        if not dest.active:
            return   # an inactive buffer's sender waits
        batch = dest.cursor.take(limit, block=False)
        if not batch:
            return
        if not succeed:
            dest.cursor.release()
            return
        ids = [int(f.values[0]) for f in batch]
        for reading_id in ids:
            # in one run, strictly in order: a replay after a restart starts a new run
            assert reading_id > dest.last_in_run, (name, reading_id, dest.last_in_run)
            dest.last_in_run = reading_id
        dest.delivered.extend(ids)
        dest.cursor.stats.delivered += len(ids)
        dest.cursor.ack(len(ids))

    @rule(active=st.booleans())
    def switch_b(self, active):
        """Buffer b loses its API key (inactive), or gets it back."""
        self.dests["b"].active = active
        self.spool.set_recording(self.dests["b"].cursor, active)

    @rule(seconds=st.sampled_from([1, 20, 40, 70, 200]))
    def tick(self, seconds):
        self.now += seconds
        self.spool.maintain()

    @rule()
    def crash_process(self):
        """kill -9: everything flushed is on the tmpfs and must still arrive; what the loop
        accepted in the pass the kill interrupted was never written (nor acknowledged to anyone)."""
        self.stop_threads()
        for dest in self.dests.values():
            dest.keep(lambda i: self.seq_of[i] <= self.spool.flushed)
        self.start()

    @rule()
    def clean_restart(self):
        self.spool.close()
        self.start()

    @rule()
    def power_cut(self):
        """Power lost: the tmpfs is gone and the disk keeps only what was synced."""
        self.stop_threads()
        self.power_cuts += 1
        self.damaged = True    # readings not yet synced are gone: counting them lost is right
        durable = self._durable_seqs()
        for dest in self.dests.values():
            dest.keep(lambda i: self.seq_of[i] in durable)
        self.cold.power_cut()
        self.hot = MemoryFiles()
        self.start()

    @precondition(lambda self: any(n.endswith(".seg") for n in self.cold.data))
    @rule(data=st.data())
    def damage_between_runs(self, data):
        """A bit flips in a saved segment while the gateway is down."""
        self.spool.close()
        names = sorted(n for n in self.cold.data if n.endswith(".seg") and self.cold.data[n])
        if names:
            name = data.draw(st.sampled_from(names))
            offset = data.draw(st.integers(0, len(self.cold.data[name]) - 1))
            self.cold.data[name][offset] ^= 0x10
            self.damaged = True
            self.cold.durable[name] = bytes(self.cold.data[name])
            # the readings of that segment may be lost (counted), unless the hot tier has them
            first = int(name[:20])
            later = [int(n[:20]) for n in names if int(n[:20]) > first]
            end = min(later) if later else float("inf")
            for dest in self.dests.values():
                dest.must_arrive = {i for i in dest.must_arrive if not first <= self.seq_of[i] < end}
        self.start()

    @rule(full=st.booleans())
    def disk_full(self, full):
        self.cold.full = full

    # -- invariants ---------------------------------------------------------------------
    @invariant()
    def accounting_identity(self):
        for dest in self.dests.values():
            s = dest.cursor.stats
            assert s.accepted == s.delivered + len(dest.cursor) + sum(s.dropped.values()), (dest.name, s)

    @invariant()
    def no_duplicates_without_power_cuts(self):
        if self.power_cuts == 0:
            for dest in self.dests.values():
                assert len(dest.delivered) == len(set(dest.delivered)), dest.name

    @invariant()
    def nothing_counted_lost_unless_gone_from_storage(self):
        if not self.damaged:
            for dest in self.dests.values():
                assert dest.cursor.stats.dropped["lost"] == 0, (dest.name, dest.cursor.stats)

    @invariant()
    def nothing_promised_is_given_up(self):
        """Readings the spool must keep are either delivered or still queued."""
        for dest in self.dests.values():
            pending_from = dest.cursor.acked + 1
            for reading_id in dest.must_arrive - set(dest.delivered):
                assert self.seq_of[reading_id] >= pending_from, (
                    dest.name, reading_id, self.seq_of[reading_id], dest.cursor.acked, dest.cursor.stats)

    @invariant()
    def queued_is_what_is_owed(self):
        """Without damage, a buffer's queue is exactly the readings owed to it and not yet
        delivered: nothing is kept for an inactive buffer beyond what it held."""
        if not self.damaged:
            for dest in self.dests.values():
                owed = dest.must_arrive - set(dest.delivered)
                assert len(dest.cursor) == len(owed), (dest.name, len(dest.cursor), sorted(owed))

    @invariant()
    def nothing_is_kept_for_an_inactive_buffer_owed_nothing(self):
        if not self.damaged:
            for dest in self.dests.values():
                if not dest.active and not dest.must_arrive - set(dest.delivered):
                    assert dest.cursor.acked == self.spool.head, (dest.name, dest.cursor.acked, self.spool.head)

    def _durable_seqs(self):
        """Sequence numbers a power cut now would keep: readings in synced cold frames."""
        from gateway.spool import journal
        seqs = set()
        for name in self.cold.durable_names:
            data = self.cold.durable.get(name, b"")
            if not name.endswith(".seg"):
                continue
            for entry in journal.scan(data).entries:
                seqs.update(range(entry.first_seq, entry.first_seq + entry.count))
        return seqs


# A longer search: OEMGATEWAY_MODEL_EXAMPLES=2000 python -m pytest tests/unit/test_spool_model.py
SpoolMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("OEMGATEWAY_MODEL_EXAMPLES", "60")), stateful_step_count=40,
    deadline=None)
TestSpoolModel = SpoolMachine.TestCase
