"""The spool: one log of every accepted reading, shared by all buffers, each with a cursor.

Readings live in two tiers of segment files (see ``journal.py``):

* **hot** — on a tmpfs (``/run/oemgateway``): every reading is appended within one event-loop
  iteration of being accepted, never synced. It survives ``kill -9`` and service restarts and
  costs the SD card nothing.
* **cold** — on the SD card (``/var/lib/oemgateway/spool``): written only for readings some
  buffer has failed to deliver for ``spill_after`` seconds, once every ``spill_interval``,
  as one compressed, checksummed frame and one ``fdatasync``; and on a clean stop, everything
  still unsent. While every destination is healthy nothing is written to it.

Each buffer reads after its own cursor and advances it once the destination has the
readings; a segment is deleted when every cursor has passed it. Bounds (``hot_max_bytes``,
``cold_max_bytes``, ``max_age``) drop the oldest readings first, counted per buffer.
Recovery never needs a person: a torn tail is truncated, damaged frames are skipped (and the
readings in them counted as lost), files with nothing readable are set aside.
"""

import dataclasses
import itertools
import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import AbstractSet, Callable, Dict, Iterable, List, Optional, Set, Tuple

from gateway.frame import Frame
from gateway.logs import LogThrottle, error_text, plural
from gateway.spool import journal
from gateway.spool.cursors import DROP_TEXT, BufferStats, Cursor, CursorStore, _count_in, _merged_ranges
from gateway.spool.storage import Files, MemoryFiles
from gateway.spool.tiers import Segment, Tier

log = logging.getLogger("oemgateway.spool")

SPILL_CHUNK = 16 * journal.FRAME_READINGS   # readings a spill reads and writes at a time


@dataclass
class SpoolSettings:
    hot_max_bytes: int = 16 * 1024 * 1024
    cold_max_bytes: int = 64 * 1024 * 1024
    max_age: float = 30 * 86400
    spill_after: float = 60.0
    spill_interval: float = 60.0
    hot_segment_bytes: int = 256 * 1024
    cold_segment_bytes: int = 1024 * 1024
    tail_items: int = 2048
    cold_cursor_interval: float = 5.0



class Spool:
    """The shared log. ``append``/``flush`` run on the event loop; cursors are read and
    advanced by the buffers' sender threads; spilling and cleanup run on the spool's thread.

    Readers never miss a reading: those the loop has appended but not yet written to the hot
    tier (it writes once per pass) are always in ``_recent``, with the last ``tail_items``
    written ones; so a reading not found in memory was written, and one then found in no
    file is really gone (damaged, or lost with the power) and only then counted as lost.
    """

    def __init__(self, hot: Files, cold: Optional[Files], settings: SpoolSettings,
                 clock: Callable[[], float] = time.time):
        self.settings = settings
        self.hot = Tier("hot", hot, settings.hot_segment_bytes)
        self.cold = Tier("cold", cold, settings.cold_segment_bytes) if cold is not None else None
        self.clock = clock
        self.hot_cursors = CursorStore(hot)
        self.cold_cursors = CursorStore(cold) if cold is not None else None
        self.cursors: Dict[str, Cursor] = {}
        self.head = 0             # last sequence number accepted
        self.flushed = 0          # last sequence number written to the hot tier
        self.cold_high = 0        # last sequence number the cold tier holds durably (synced)
        self._pending: List[bytes] = []   # readings appended since the last flush, encoded
        self._recent: deque = deque()     # (seq, frame): all after ``flushed``, and a few before
        self._saved_state: Dict[str, dict] = {}
        self._replays: Dict[str, int] = {}   # buffer -> readings it is sent again (position lost)
        self.corrections: List[List[float]] = []   # [first_seq, last_seq, seconds]: clock fixes
        self._lock = threading.RLock()
        self._data = threading.Condition(self._lock)
        self._full = threading.Condition(self._lock)   # a lingering cursor has its batch
        self._maintenance = threading.Lock()   # the spool thread's, or the last one at close
        self._spill_due = threading.Event()
        self._stopping = False
        self._thread: Optional[threading.Thread] = None
        self._cold_failures = 0
        self._cold_retry_at = 0.0
        self._cold_cursor_saved_at = 0.0
        self._cold_saved: Optional[dict] = None
        self._cold_cursors_stale = False   # a buffer was forgotten: the cold copy must know
        self.stats = {"spill_writes": 0, "spill_bytes": 0, "spill_errors": 0, "recovered": 0}
        self._cold_log = LogThrottle(log, logging.ERROR, 300.0)

    @property
    def persistent(self) -> bool:
        """Does what is queued outlive the process?"""
        return not isinstance(self.hot.files, MemoryFiles)

    # -- start and stop -----------------------------------------------------------------
    def open(self, buffers: Optional[Iterable[str]] = None) -> None:
        """Recover both tiers and the cursors; cheap enough to accept readings right after.

        ``buffers``: the names of the buffers in the config. The places of others are
        forgotten (their readings dropped as ``removed``); and when the saved places cannot
        be trusted, these buffers, if their place is not known, are sent every reading still
        held. None: keep every saved place.
        """
        started = time.monotonic()
        self.hot.recover()
        if self.cold is not None:
            self.cold.recover()
            self.cold_high = self.cold.last_seq
        saved, trusted = self._load_state()
        state = saved["cursors"]
        # Readings up to the head were accepted; those found nowhere are counted as lost.
        self.head = self.flushed = max([saved["head"], self.hot.last_seq, self.cold_high] +
                                       [s["acked"] for s in state.values()] +
                                       [end for s in state.values() for _, end in s.get("skips", [])])
        self._saved_state = state
        self.corrections = saved["corrections"]
        if buffers is not None:
            configured = set(buffers)
            self._forget_unconfigured(configured)
            if not trusted:
                self._replay_held(configured - set(state))
        pending = sum(max(0, self.head - s["acked"] - _count_in(s.get("skips", []), s["acked"], self.head))
                      for s in state.values())
        self.stats["recovered"] = pending
        if self.head:
            log.info("spool: recovered in %.3f s: readings up to #%d, %s for %s",
                     time.monotonic() - started, self.head, plural(pending, "reading") + " pending",
                     plural(len(state), "buffer"))
        self._thread = threading.Thread(target=self._run, name="spool", daemon=True)
        self._thread.start()

    def _load_state(self) -> Tuple[dict, bool]:
        """Both tiers' saved states merged (each buffer at its furthest place), and whether
        they can be trusted: not when a tier holding readings has no intact cursor file."""
        merged: dict = {"head": 0, "cursors": {}, "corrections": []}
        trusted = True
        for tier, store in ((self.hot, self.hot_cursors), (self.cold, self.cold_cursors)):
            saved = store.load() if store is not None else None
            if saved is None:
                trusted = trusted and not (tier is not None and tier.segments)
                continue
            merged["head"] = max(merged["head"], saved["head"])
            merged["corrections"] = merged["corrections"] or saved.get("corrections", [])
            for name, cursor in saved["cursors"].items():
                if name not in merged["cursors"] or cursor["acked"] > merged["cursors"][name]["acked"]:
                    merged["cursors"][name] = cursor
        return merged, trusted

    def _forget_unconfigured(self, configured: Set[str]) -> None:
        """Buffers no longer in the config lose their place: their readings are dropped."""
        gone = sorted(set(self._saved_state) - configured)
        for name in gone:
            saved = self._saved_state.pop(name)
            acked = saved["acked"]
            _log_removed(name, max(0, self.head - acked - _count_in(saved.get("skips", []), acked, self.head)))
        if gone:
            self._save_cursors()
            self._cold_cursors_stale = True

    def _replay_held(self, names: Set[str]) -> None:
        """With no trustworthy saved places, buffers whose place is not known start at the
        oldest reading still held and skip only what is not held: duplicates, never loss."""
        held = _merged_ranges(self.hot.held() + (self.cold.held() if self.cold is not None else []))
        if not held or not names:
            return
        gaps = [[before[1] + 1, after[0] - 1] for before, after in zip(held, held[1:])]
        if held[-1][1] < self.head:
            gaps.append([held[-1][1] + 1, self.head])
        count = sum(last - first + 1 for first, last in held)
        for name in names:
            self._saved_state[name] = {"acked": held[0][0] - 1, "skips": [list(gap) for gap in gaps]}
            self._replays[name] = count
        log.warning("spool: the saved delivery positions are missing or damaged: the %s still "
                    "held are sent again to %s, from the oldest (some may arrive twice, none is lost)",
                    plural(count, "reading"), ", ".join(f"buffer '{name}'" for name in sorted(names)))

    def close(self) -> None:
        """Clean stop: write everything unsent to the cold tier (synced) and every cursor."""
        with self._lock:
            self._flush_locked()
            self._stopping = True
        self._spill_due.set()
        if self._thread is not None:
            self._thread.join(30)
        self.maintain(stopping=True)
        with self._lock:
            self._save_cursors()
            self.hot.files.close()
            if self.cold is not None:
                self.cold.files.close()

    # -- cursors ------------------------------------------------------------------------
    def register(self, name: str, stats: BufferStats) -> Cursor:
        """The cursor of buffer ``name``: where it was before a restart, else at the head.
        A buffer of that name still being retired (its type changed) is forgotten first."""
        with self._lock:
            if name in self.cursors:
                self.unregister(self.cursors[name])
            saved = self._saved_state.get(name)
            acked, skips = (saved["acked"], saved.get("skips", [])) if saved else (self.head, [])
            cursor = Cursor(self, name, min(acked, self.head), [list(s) for s in skips], stats)
            stats.accepted += self.head - cursor.acked - self._skipped(cursor, cursor.acked, self.head)
            stats.replayed += self._replays.pop(name, 0)
            self.cursors[name] = cursor
            if saved is None:
                self._save_cursors()  # from now on, a restart must find this buffer's place
            return cursor

    def unregister(self, cursor: Cursor) -> None:
        """A buffer removed from the config: what it has not delivered is dropped (counted as
        ``removed``) and its place forgotten, so the spool no longer keeps anything for it."""
        with self._lock:
            if self.cursors.get(cursor.name) is not cursor:
                return   # already forgotten
            del self.cursors[cursor.name]
            self._saved_state.pop(cursor.name, None)
            _log_removed(cursor.name, self._give_up(cursor, self.head, "removed"))
            self._save_cursors()
            self._cold_cursors_stale = True

    def set_recording(self, cursor: Cursor, recording: bool) -> None:
        """An inactive buffer keeps what it holds but takes nothing accepted meanwhile (and
        once it holds nothing, nothing is kept for it: see ``append``)."""
        with self._lock:
            if recording == cursor.recording:
                return
            cursor.recording = recording
            if not recording:
                self._skip_forward(cursor)
                cursor.inactive_since = self.head
                return
            cursor.skips += self._inactive_range(cursor, self.head)
            cursor.inactive_since = None

    # -- the loop thread ----------------------------------------------------------------
    def append(self, frame: Frame, skip: AbstractSet[str] = frozenset()) -> int:
        """Accept a reading for every recording buffer but those named in ``skip`` (routing:
        it is not for them); returns its sequence number."""
        line = journal.encode_reading(frame)
        with self._lock:
            self.head += 1
            seq = self.head
            self._pending.append(line)
            self._recent.append((seq, frame))
            for cursor in self.cursors.values():
                if skip and cursor.name in skip and cursor.recording:
                    if cursor.acked == seq - 1:
                        cursor.acked = seq   # holding nothing: nothing to remember
                    elif cursor.skips and cursor.skips[-1][1] == seq - 1:
                        cursor.skips[-1][1] = seq
                    else:
                        cursor.skips.append([seq, seq])
                elif cursor.recording:
                    cursor.stats.accepted += 1
                    if cursor.linger_for and seq - cursor.acked >= cursor.linger_for:
                        self._full.notify_all()
                    if cursor.max_items and seq - cursor.acked > cursor.max_items:
                        self._drop(cursor, seq - cursor.max_items, "overflow")
                elif cursor.acked == seq - 1:
                    cursor.acked = seq   # inactive and holding nothing: keep nothing for it
            self._data.notify_all()
        return seq

    def flush(self) -> None:
        """Write what was appended since the last flush to the hot tier."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if not self._pending:
            return
        before = self.flushed
        try:
            self.hot.append(before + 1, self._pending, compress=False)
        except OSError as exc:
            log.error("spool: cannot write to %s: %s (readings stay in memory)", self.hot.files.describe(),
                      error_text(exc))
            return
        self.flushed += len(self._pending)
        self._pending = []
        while len(self._recent) > self.settings.tail_items and self._recent[0][0] <= self.flushed:
            self._recent.popleft()   # only written readings leave memory
        if any(self._ahead_of(cursor, before) for cursor in self.cursors.values()):
            self._save_cursors()   # places the last save could not record in full
        if self.hot.bytes > 0.75 * self.settings.hot_max_bytes:
            self._spill_due.set()

    # -- the sender threads -------------------------------------------------------------
    def read(self, cursor: Cursor, limit: int, block: bool) -> List[Tuple[int, Frame]]:
        with self._lock:
            while True:
                if cursor._interrupted:
                    cursor._interrupted = False
                    return []
                batch = self._corrected(self._read_after(cursor, limit))
                if batch or not block:
                    return batch
                self._data.wait()

    def correct_times(self, first_seq: int, last_seq: int, seconds: float) -> None:
        """Readings ``first_seq``..``last_seq`` were stamped by a clock ``seconds`` wrong."""
        with self._lock:
            self.corrections.append([first_seq, last_seq, seconds])
            self._save_cursors()

    def _corrected(self, batch: List[Tuple[int, Frame]]) -> List[Tuple[int, Frame]]:
        if not self.corrections or not batch:
            return batch
        out = []
        for seq, frame in batch:
            for first, last, seconds in self.corrections:
                if first <= seq <= last:
                    frame = dataclasses.replace(frame, time=frame.time + seconds)
            out.append((seq, frame))
        return out

    def _read_after(self, cursor: Cursor, limit: int) -> List[Tuple[int, Frame]]:
        """Up to ``limit`` readings right after the cursor (none if it is at the head).
        Readings written and then found in no file are dropped as lost on the way."""
        while True:
            self._skip_forward(cursor)
            after = cursor.acked
            if after >= self.head:
                return []
            stop = self._next_skip_start(cursor)
            count = min(limit, stop - after - 1) if stop else limit
            if self._recent and self._recent[0][0] <= after + 1:
                start = after + 1 - self._recent[0][0]
                return list(itertools.islice(self._recent, start, start + count))
            batch = self._read_files(after, count)
            if batch and batch[0][0] == after + 1:
                return batch
            # Not in memory, so written; yet no file has it: damaged, or lost with the power.
            resume = min(batch[0][0] if batch else self.head + 1,
                         self._recent[0][0] if self._recent else self.head + 1)
            self._drop(cursor, resume - 1, "lost")

    def _read_files(self, after: int, limit: int) -> List[Tuple[int, Frame]]:
        """The readings after ``after`` from the tier that has the next one (hot first);
        if neither has it, from the one whose readings resume soonest."""
        candidates = []
        for tier in (self.hot, self.cold):
            if tier is None:
                continue
            try:
                lines = tier.read(after, limit)
            except OSError as exc:
                log.error("spool: cannot read %s: %s", tier.files.describe(), error_text(exc))
                continue
            if lines and lines[0][0] == after + 1:
                return _decoded(lines)
            if lines:
                candidates.append(lines)
        if not candidates:
            return []
        return _decoded(min(candidates, key=lambda lines: lines[0][0]))

    def _time_after(self, after: int) -> Optional[float]:
        """When the first reading held after ``after`` was accepted (None if there is none)."""
        if self._recent and self._recent[0][0] <= after + 1:
            index = after + 1 - self._recent[0][0]
            return self._recent[index][1].time if index < len(self._recent) else None
        batch = self._read_files(after, 1)
        return batch[0][1].time if batch else None

    def advance(self, cursor: Cursor, seq: int) -> None:
        with self._lock:
            if seq > cursor.acked:
                cursor.acked = seq
                self._save_cursors()

    def _drop(self, cursor: Cursor, through: int, reason: str) -> None:
        """Give up the readings of ``cursor`` up to ``through``, counted and logged."""
        count = self._give_up(cursor, through, reason)
        if count:
            cursor.drop_log("buffer '%s': %s dropped: %s", cursor.name, plural(count, "reading"), DROP_TEXT[reason])

    def _give_up(self, cursor: Cursor, through: int, reason: str) -> int:
        """Move ``cursor`` past ``through``, counting what it had not taken under ``reason``."""
        if through <= cursor.acked:
            return 0
        count = through - cursor.acked - self._skipped(cursor, cursor.acked, through)
        cursor.stats.dropped[reason] += count
        cursor.acked = through
        return count

    def queued(self, cursor: Cursor) -> int:
        with self._lock:
            return max(0, self.head - cursor.acked - self._skipped(cursor, cursor.acked, self.head))

    def oldest_time(self, cursor: Cursor) -> Optional[float]:
        with self._lock:
            return self._time_after(cursor.acked) if cursor.acked < self.head else None

    def wait_interrupt(self, cursor: Cursor, timeout: Optional[float]) -> bool:
        with self._lock:
            if not cursor._interrupted:
                self._data.wait_for(lambda: cursor._interrupted, timeout)
            interrupted, cursor._interrupted = cursor._interrupted, False
            return interrupted

    def wait_for_readings(self, cursor: Cursor, count: int, timeout: float) -> None:
        """Wait until ``count`` readings are after the cursor, or ``timeout`` s, or an interrupt
        (which stays pending for the next ``read``)."""
        with self._lock:
            cursor.linger_for = count   # append() wakes it when that many are there, not before
            try:
                self._full.wait_for(lambda: cursor._interrupted or self.head - cursor.acked >= count, timeout)
            finally:
                cursor.linger_for = 0

    def interrupt(self, cursor: Cursor) -> None:
        with self._lock:
            cursor._interrupted = True
            self._data.notify_all()
            self._full.notify_all()

    # -- skips --------------------------------------------------------------------------
    def _skipped(self, cursor: Cursor, after: int, through: int) -> int:
        """How many readings in (after, through] are not for ``cursor``."""
        return _count_in(cursor.skips + self._inactive_range(cursor, self.head), after, through)

    @staticmethod
    def _inactive_range(cursor: Cursor, through: int) -> List[List[int]]:
        """The readings after ``through`` is accepted while ``cursor`` is inactive, as a range."""
        if cursor.inactive_since is None or through <= cursor.inactive_since:
            return []
        return [[cursor.inactive_since + 1, through]]

    @staticmethod
    def _skip_forward(cursor: Cursor) -> None:
        while cursor.skips and cursor.skips[0][0] <= cursor.acked + 1:
            start, end = cursor.skips.pop(0)
            cursor.acked = max(cursor.acked, end)

    @staticmethod
    def _next_skip_start(cursor: Cursor) -> Optional[int]:
        return cursor.skips[0][0] if cursor.skips else None

    # -- the spool thread: spilling, cleanup, bounds -------------------------------------
    def _run(self) -> None:
        while True:
            interval = self.settings.spill_interval
            if self.cold is not None and self.cold.segments:
                interval = min(interval, self.settings.cold_cursor_interval)
            self._spill_due.wait(interval)
            self._spill_due.clear()
            if self._stopping:
                return
            try:
                self.maintain()
            except Exception:  # never let housekeeping kill the thread
                log.exception("spool: internal error during maintenance")

    def maintain(self, stopping: bool = False) -> None:
        """Spill what needs it, delete what every buffer is done with, enforce the bounds.

        Writing to the SD card (and its fdatasync) happens without the spool's lock, so a slow
        card never delays accepting readings or delivering them; one maintenance at a time.
        """
        with self._maintenance:
            self._maintain(stopping)

    def _maintain(self, stopping: bool) -> None:
        with self._lock:
            self._flush_locked()
            span = self._spill_span(stopping or self.hot.bytes > 0.75 * self.settings.hot_max_bytes,
                                    stopping) if self.cold is not None else None
        if span is not None:
            self._spill(*span)
        with self._lock:
            self._cleanup()
            self._enforce_bounds()
            # Cold cursors matter only while the cold tier holds readings (or must forget a
            # removed buffer): no writes otherwise.
            state = None
            if self.cold_cursors is not None and (self.cold.segments or self._cold_cursors_stale) and (
                    stopping or self.clock() >= self._cold_cursor_saved_at + self.settings.cold_cursor_interval):
                state = self._state()
                state["head"] = self.cold_high   # what a power cut would leave on disk
                if state == self._cold_saved:
                    state = None   # during an outage nothing moves: no write
        if state is not None:
            self._save_cold_cursors(state)

    def _min_acked(self) -> int:
        acked = [c.acked for c in self.cursors.values()]
        acked += [s["acked"] for n, s in self._saved_state.items() if n not in self.cursors]
        return min(acked) if acked else self.head

    def _spill_span(self, force: bool, stopping: bool) -> Optional[Tuple[int, int]]:
        """Which readings to write to the cold tier now, as ``(first, last)`` sequence
        numbers: those not yet there that some buffer still needs, once the oldest of them
        has waited ``spill_after`` (all of them if ``force``)."""
        if self._cold_retry_at > self.clock() and not stopping:
            return None
        start = max(self.cold.last_seq, self._min_acked()) + 1
        if start > self.flushed:
            return None
        if not force:
            oldest = self._time_after(start - 1)
            if oldest is None or self.clock() - oldest < self.settings.spill_after:
                return None
        return start, self.flushed

    def _spill(self, first: int, last: int) -> None:
        """Save readings ``first``..``last`` to the cold tier, then sync it once. They are read
        from the hot tier and written ``SPILL_CHUNK`` at a time: a backlog of any size is never
        held in memory whole."""
        after = first - 1
        try:
            while after < last:
                with self._lock:
                    lines = [(seq, line) for seq, line in self.hot.read(after, SPILL_CHUNK) if seq <= last]
                if not lines:
                    break
                written = self.cold.write(lines[0][0], [line for _, line in lines], compress=True)
                with self._lock:
                    self.cold.commit(written)
                    self.stats["spill_bytes"] += sum(item.entry.length for item in written)
                after = lines[-1][0]
            self.cold.sync()
        except OSError as exc:
            with self._lock:
                self._cold_failures += 1
                self.stats["spill_errors"] += 1
                delay = min(300.0, 2.0 ** self._cold_failures)
                self._cold_retry_at = self.clock() + delay
            self._cold_log("spool: cannot save %s to %s: %s (they stay in %s; retrying in %.0f s)",
                           plural(last - after, "reading"), self.cold.files.describe(), error_text(exc),
                           self.hot.files.describe(), delay)
            return
        with self._lock:
            self._cold_failures = 0
            self._cold_retry_at = 0.0
            self.cold_high = max(self.cold_high, after)
            self.stats["spill_writes"] += 1

    def _save_cold_cursors(self, state: dict) -> None:
        try:
            self.cold_cursors.save(state, sync=True)
            self._cold_cursor_saved_at = self.clock()
            self._cold_saved = json.loads(json.dumps(state))
            self._cold_cursors_stale = False
        except OSError as exc:
            self._cold_log("spool: cannot save cursors to %s: %s", self.cold.files.describe(), error_text(exc))

    def _cleanup(self) -> None:
        done = self._min_acked()
        self.hot.delete_through(done)
        if self.cold is not None:
            self.cold.delete_through(done)

    def _enforce_bounds(self) -> None:
        hot_max = self.settings.hot_max_bytes
        # The hot tier may shed what the cold tier holds safely.
        while self.hot.bytes > hot_max and len(self.hot.segments) > 1 and \
                self.hot.segments[1].first_seq - 1 <= max(self.cold_high, self._min_acked()):
            self.hot._remove(self.hot.segments[0])
        while self.hot.bytes > hot_max and len(self.hot.segments) > 1:
            reason = "disk_error" if self._cold_failures else "overflow"
            self._drop_all_through(self.hot.segments[1].first_seq - 1, reason)
            self.hot._remove(self.hot.segments[0])
        if self.cold is None:
            return
        while len(self.cold.segments) > 1 and (
                self.cold.bytes > self.settings.cold_max_bytes or self._too_old(self.cold.segments[0])):
            self._drop_all_through(self.cold.segments[1].first_seq - 1, "overflow")
            self.cold._remove(self.cold.segments[0])

    def _too_old(self, segment: Segment) -> bool:
        if not self.settings.max_age:
            return False
        lines = self.cold.read(segment.first_seq - 1, 1)
        return bool(lines) and self.clock() - journal.decode_reading(lines[0][1]).time > self.settings.max_age

    def _drop_all_through(self, seq: int, reason: str) -> None:
        for cursor in self.cursors.values():
            self._drop(cursor, seq, reason)
        for saved in self._saved_state.values():
            saved["acked"] = max(saved["acked"], seq)

    # -- cursor persistence -------------------------------------------------------------
    def _state(self) -> dict:
        cursors = {n: s for n, s in self._saved_state.items() if n not in self.cursors}
        for name, cursor in self.cursors.items():
            cursors[name] = self._place(cursor)
        done = self._min_acked()
        self.corrections = [c for c in self.corrections if c[1] > done]
        return {"head": self.flushed, "cursors": cursors, "corrections": self.corrections}

    def _place(self, cursor: Cursor) -> dict:
        """What a restart needs of a cursor. Never past what is written (nothing after that
        exists after a crash), and an inactive one's skip-in-progress saved as a range."""
        through = self.flushed
        skips = [[start, min(end, through)] for start, end in cursor.skips + self._inactive_range(cursor, through)
                 if start <= through]
        return {"acked": min(cursor.acked, through), "skips": skips}

    def _ahead_of(self, cursor: Cursor, seq: int) -> bool:
        """Does ``cursor``'s place reach past ``seq``: readings it took, or skips, before they
        were written (or it is inactive: what it skips grows with every reading)?"""
        return (cursor.acked > seq or cursor.inactive_since is not None
                or any(end > seq for _, end in cursor.skips))

    def _save_cursors(self) -> None:
        """Save every cursor to the hot tier (a tmpfs: cheap, done at every acknowledgement)."""
        try:
            self.hot_cursors.save(self._state())
        except OSError as exc:
            self._cold_log("spool: cannot save cursors to %s: %s", self.hot.files.describe(), error_text(exc))


def _log_removed(name: str, count: int) -> None:
    log.log(logging.WARNING if count else logging.INFO, "buffer '%s': %s dropped: %s",
            name, plural(count, "reading"), DROP_TEXT["removed"])


def _decoded(lines: List[Tuple[int, bytes]]) -> List[Tuple[int, Frame]]:
    """Decode readings: those in front that do not decode are left out (the reader counts them
    lost, as a gap), and the result stops before any later one that does not."""
    try:
        return list(zip([seq for seq, _ in lines], journal.decode_readings([line for _, line in lines])))
    except (ValueError, TypeError):
        pass   # one of them is damaged: find which, one by one
    out = []
    for seq, line in lines:
        try:
            out.append((seq, journal.decode_reading(line)))
        except (ValueError, TypeError):
            if out:
                break
    return out
