"""The delivery engine every buffer gets for free, and the errors a buffer's ``send()`` raises.

A buffer plugin (``buffers.base.Buffer``) implements *how to deliver one batch*: ``send(batch)``
returns when the destination has every reading of the batch, or raises one of the errors below
to say what went wrong and, when it knows, what the destination kept. ``Delivery`` owns the rest,
once for every destination: the sender thread, batch sizes, finding a refused reading, retries,
and the counters.

Counting. A reading leaves the queue only in ``_settle()``, which counts each one it removes
exactly once: delivered, or dropped as ``rejected``. Nothing is counted when an attempt fails
and the readings stay queued, so ``accepted = delivered + queued + dropped`` holds whatever
happens, however often a batch is tried. (The spool counts the readings its bounds drop.)

Refusals. A destination that refuses a reading says so with a ``RejectedError``:

* naming the reading (``delivered=n``: the first n readings were stored, reading n is refused,
  the rest were not stored): the n are delivered, the refused one is dropped, and sending goes
  on from the one after it, with batches of the size below. Nothing stored is ever sent again.
  With ``node_refused`` the destination refuses the reading's whole node (emoncms' limit of 32
  nodes): the engine remembers that for ``NODE_REFUSAL_MEMORY`` seconds, or until the settings
  change, and drops the node's readings without sending them (counted per node as rejected).
  Ten minutes: a refused node then costs one refused request per ten minutes at most, while
  room made at the destination (inputs deleted in emoncms) is used within ten minutes, or at
  once after a config change.
* without naming it (``delivered=None``): the engine has to search, re-sending readings. That
  is only right for a destination that keeps nothing of a refused request, or to which a
  reading sent twice does no harm; a plugin that knows better names the reading. The search
  sends the batch of n in pieces of about sqrt(n): pieces before the bad reading get through,
  the piece that holds it is searched the same way, and as soon as the bad reading is alone and
  refused it is dropped and batches are back to their size at once (full, where refusals are
  rare). For n = 500 a refused reading costs on average 20 requests and 530 readings sent
  again (the refused batch itself is 500 of them), against 750 readings for halving.

Batch sizes: ``batch_size`` while nothing is refused; after ``TooLargeError`` half of what was
too large, from then on (until the settings change); one reading at a time while the
destination fails (a probe: small, and a reading that then gets through proves the way is
clear: full batches follow). While the destination refuses readings often, smaller
(``RefusalRate``): a refusal makes rows go again in proportion to the batch it hit (half of it
when the refused row is named, all of it and the search's pieces when not), so the engine
estimates how often readings are refused lately and sends batches small enough that about 3 %
of the rows go again, but never fewer than 10 readings. A backlog with one bad reading in
1,000 then sends 1.05 (named) or 1.08 (unnamed) rows per reading instead of 1.25 or 1.53, and
a lone bad reading in a long backlog leaves full batches; the size grows back as clean
readings go through. ``RefusalRate`` has the arithmetic; ``bench/refusal_rate.py`` measures it.

Retries: after a failure the wait doubles from ``RETRY_BASE`` up to ``retry_max``, each time
a random amount between half and all of it (many gateways behind one failed server do not come
back in step), never sooner than a ``Retry-After`` the server gave (up to
``RETRY_AFTER_LIMIT``). A refused key or URL (``AuthError``) waits ``AUTH_RETRY_FACTOR`` times
longer: only a change on the server or in the config helps, and a config change is applied at
once.
"""

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple

from gateway.backoff import Backoff
from gateway.frame import Frame, Node
from gateway.logs import LogThrottle, plural
from gateway.spool import Cursor

if TYPE_CHECKING:
    from buffers.base import Buffer


class DeliveryError(Exception):
    """Base of the errors ``send()`` raises; the message is shown in the log and status."""


class TransientError(DeliveryError):
    """Try again later (server down, timeout, 5xx). ``retry_after``: seconds the server asked for."""

    def __init__(self, message: str, retry_after: Optional[float] = None):
        super().__init__(message)
        self.retry_after = retry_after


class RejectedError(DeliveryError):
    """The destination will never take a reading of this batch.

    ``delivered``: how many readings at the head of the batch the destination stored before it
    came to the refused one, which is ``batch[delivered]``; the ones after it were not stored.
    None: the destination does not say which reading (see the module docstring).
    ``node_refused``: the destination refuses every reading of that reading's node for now.
    """

    def __init__(self, message: str, delivered: Optional[int] = None, node_refused: bool = False):
        super().__init__(message)
        self.delivered = delivered
        self.node_refused = node_refused


class AuthError(DeliveryError):
    """The destination refuses us (wrong key, wrong URL): keep everything, retry slowly."""


class TooLargeError(DeliveryError):
    """The request was too large and nothing of it was stored: send smaller batches."""


class RefusalRate:
    """How often the destination refuses readings lately, and the batch size that makes that cheap.

    What a refusal costs. A reading refused in a batch of b makes rows go again: named (the rows
    in front stored), the rows behind it, (b - 1) / 2 on average: f = 1/2 per row of the batch;
    not named (nothing stored), the whole batch, then the search's refused pieces: b + sqrt(b)
    + b^(1/4) + ... : f = 1, the roots aside. With p bad readings per reading sent, the rows
    sent again per reading are about p * f * b.

    The estimate. ``cost`` adds f for each refusal, ``readings`` counts the readings sent, both
    over a window of W readings sent (each weighing exp(-age / W), its age counted in readings
    sent since); c = cost / readings estimates p * f. A refused node adds nothing (its readings
    are not sent again: it says nothing about those to come).

    The size: b = clamp(R / c, FLOOR, batch_size), which keeps the rows sent again near R of
    the readings whatever the rate, down to the floor.

    * R = 3 %. One bad reading per 1,000: named b = 60, 30 rows again each (3 %); not named
      b = 30, 30 + 5 + 2 + 1 = 38 rows again (3.8 %) and about 8 requests each. The first
      refusals come before the estimate knows the rate (the very first hits a full batch: 250
      or 530 rows), so a backlog of 20,000 sends 1.05 (named) or 1.08 (not) rows per reading,
      within the 1.1 allowed; with a request costing as much as 5 rows (emoncms on its own
      machine: 4 ms, rows 0.5-0.8 ms) it drains in 1.10 and 1.23 times the clean time. R = 5 %
      gives 1.104 rows (not named), over the 1.1, and no quicker drain. Less than 3 % costs more time in requests than it saves in
      rows: with a request worth k rows the drain is quickest at b = sqrt(k / (p * f)), for
      emoncms at 1 in 1,000 about 100 (named) and 70 (not), above what R = 3 % gives. For a
      far destination (a request worth 100 rows or more) that optimum is near full batches:
      there this rule keeps the rows sent again low at the price of time.
    * W = 2 * batch_size / R readings (33,333 for 500). One refusal in a window that has seen
      half of its readings gives c <= 1 / (W/2), b >= R * W / 2 = batch_size: a lone bad
      reading in a long backlog costs its own search and nothing more, the next batch is full.
      Rates at which full batches keep within R (p * f <= R / batch_size) leave them full on
      average too. A longer window sees a rate come and go more slowly.
    * At start the window counts as W / 10 clean readings (``START``): a first refusal makes
      batches batch_size / 5 (not named) or 2 / 5 (named), as nothing says yet that refusals
      are rare; a backlog with one bad reading in 1,000 finds its size within a few refusals.
      A lone bad reading soon after start costs about 15 requests more while batches regrow.
    * FLOOR = 10. A request costs something of its own (emoncms: like 5 rows); below 10 rows
      per request that cost outweighs the rows smaller batches save. Beyond p * f = R / 10
      (1 in 170 named, 1 in 330 not) the floor holds and more rows go again: with 1 in 100,
      1.05 (named) or 1.13 (not) rows per reading in a long backlog.
    * When refusals stop, c falls by e every W readings sent and b grows with it: after one bad
      reading in 1,000, batches are full again some 50,000 (named) or 70,000 (not) readings
      later. A settings change starts afresh.
    """

    RESEND = 0.03     # rows sent again, as a share of the readings, that the size aims at
    NAMED = 0.5       # the refused row is named: on average half the batch is behind it
    UNNAMED = 1.0     # not named: the whole refused batch (and the search's refused pieces)
    FLOOR = 10        # below this a request costs more than its rows
    WINDOW = 2.0      # readings the estimate looks back on, in batch_size / RESEND
    START = 0.1       # at start the window counts as this share of itself, all clean

    def __init__(self, batch_size: int):
        self.full = batch_size
        self.window = self.WINDOW * batch_size / self.RESEND
        self.readings = self.window * self.START
        self.cost = 0.0

    def sent(self, count: int) -> None:
        """``count`` more readings were sent and are done with (delivered or refused)."""
        if count > 0:
            keep = math.exp(-count / self.window)
            self.readings = self.readings * keep + self.window * (1.0 - keep)
            self.cost *= keep

    def refused(self, cost: float) -> None:
        """A reading was refused; ``cost``: ``NAMED``, ``UNNAMED``, or 0 when nothing is to
        be learned about the readings to come (a refused node's are not sent again)."""
        self.sent(1)
        self.cost += cost

    def batch_size(self) -> int:
        if self.cost * self.full <= self.RESEND * self.readings:
            return self.full   # also when nothing was refused lately
        return max(min(self.FLOOR, self.full), int(self.RESEND * self.readings / self.cost))


@dataclass
class _Search:
    """Looking for the reading a destination refused without naming it."""
    suspects: int   # readings at the head of the queue that were in the refused batch
    piece: int      # how many of them to send at a time


class Delivery:
    """Delivers one buffer's readings from its cursor in the spool, on its own sender thread.

    ``plugin`` says how to send a batch (``buffers.base.Buffer``); ``queue`` is the buffer's
    cursor. The daemon talks to this object (start, new settings, stop, the counters).
    """

    RETRY_BASE = 0.5          # seconds: the first retry waits 0.25-0.5 s, doubling up to retry_max
    AUTH_RETRY_FACTOR = 12    # a refused key or URL is retried every 12 x retry_max (1 min)
    RETRY_AFTER_LIMIT = 300.0  # a server's Retry-After is honoured up to this many seconds
    NODE_REFUSAL_MEMORY = 600.0  # seconds a node the destination refused stays refused

    def __init__(self, plugin: "Buffer", queue: Cursor):
        self.plugin = plugin
        self.name = plugin.name
        self.log = plugin.log
        self.queue = queue
        self.queue.max_items = self.settings["max_items"]
        self.stats = queue.stats
        self.rejected_by_node: Dict[str, int] = {}   # readings dropped as rejected, per node
        self._pending_settings: Optional[dict] = None
        self._draining_until: Optional[float] = None
        self._thread: Optional[threading.Thread] = None
        self._backoff = Backoff(self.RETRY_BASE, self.settings["retry_max"], jitter=0.5)
        self._failing_since: Optional[float] = None
        self._auth_failing = False
        self._size_cap: Optional[int] = None     # the most readings the destination took at once
        self._search: Optional[_Search] = None
        self._refusals = RefusalRate(self.settings["batch_size"])
        self._refusal_limit = self.settings["batch_size"]   # the last size it gave (for the log)
        self._refused_nodes: Dict[Node, Tuple[float, str]] = {}   # node -> (until, why)
        self.monotonic: Callable[[], float] = time.monotonic   # how long a node stays refused
        self._failure_log = LogThrottle(self.log, logging.WARNING, 300.0)
        self._reject_log = LogThrottle(self.log, logging.WARNING, 60.0)
        self._forget_at_exit = False
        self.recording = self._should_record()
        self.queue.set_recording(self.recording)

    @property
    def settings(self) -> dict:
        return self.plugin.settings

    def __str__(self) -> str:
        return str(self.plugin)

    # -- used by the daemon (loop thread) -----------------------------------------------
    def why_inactive(self) -> Optional[str]:
        """Why this buffer records nothing (None when it records)."""
        return self.plugin.inactive_reason() or (None if self.settings["active"] else "active = False")

    def start(self) -> None:
        reason = self.why_inactive()
        if reason:
            self.log.info("%s: inactive: %s; not recording", self, reason)
        self._thread = threading.Thread(target=self._run, name=f"buffer-{self.name}", daemon=True)
        self._thread.start()

    def update(self, settings: dict) -> bool:
        """Apply new settings live, keeping the queue; the sender thread picks them up."""
        self._pending_settings = dict(settings)
        self.queue.max_items = settings["max_items"]
        self.plugin.settings = dict(settings)
        self.recording = self._should_record()
        self.queue.set_recording(self.recording)
        self.queue.interrupt()
        return True

    def stop(self, deadline: float, forget: bool = False) -> None:
        """Stop the sender once the queue is empty or at ``deadline`` (monotonic), whichever first.

        ``forget``: the buffer was removed from the config; its cursor goes when it ends.
        """
        self._draining_until = deadline
        self._forget_at_exit = forget
        self.recording = False
        self.queue.interrupt()

    def join(self, timeout: float) -> int:
        """Wait for the sender to end; returns how many readings are still undelivered."""
        if self._thread is not None:
            self._thread.join(max(0.0, timeout))
        if self._forget_at_exit:
            self.queue.forget()   # removed from the config: nothing is kept for the next start
        return len(self.queue)

    def accounting(self) -> str:
        """``accepted = delivered + queued + dropped``, in words, for the log."""
        s = self.stats
        dropped = ", ".join(f"{reason} {count}" for reason, count in s.dropped.items() if count)
        return (f"accepted {s.accepted} = delivered {s.delivered} + queued {len(self.queue)} + "
                f"dropped {sum(s.dropped.values())}" + (f" ({dropped})" if dropped else "")
                + (f"; {s.replayed} of them replayed (their delivery position was lost)" if s.replayed else ""))

    @property
    def state(self) -> str:
        if not self.recording and self._draining_until is None:
            return "inactive"
        if self._auth_failing:
            return "refused"
        return "retrying" if self._backoff.failures else "ok"

    # -- the sender thread --------------------------------------------------------------
    def _should_record(self) -> bool:
        return self.why_inactive() is None

    def _run(self) -> None:
        try:
            while True:
                if self._pending_settings is not None:
                    self._pending_settings = None
                    self.plugin.configure()
                    self._forget_learned()
                draining = self._draining_until is not None
                if draining and (not len(self.queue) or not self._should_record()
                                 or time.monotonic() >= self._draining_until):
                    return
                if not draining and not self.recording:
                    self.queue.wait(None)  # paused until the settings change
                    continue
                limit = self._batch_limit()
                batch = self.queue.take(limit, block=not draining)
                if batch and len(batch) < limit and self.settings.get("linger") and not draining \
                        and not self._backoff.failures:
                    # Readings arriving one by one share a request when more come within
                    # ``linger`` s: a bounded wait, cut short once a full batch is there.
                    self.queue.release()
                    self.queue.linger(limit, self.settings["linger"])
                    batch = self.queue.take(limit, block=False)
                if batch:
                    self._deliver(batch)
        finally:
            if self._forget_at_exit:
                self.queue.forget()   # what it could not deliver in time is dropped, and counted
            self._failure_log.flush()
            self._reject_log.flush()
            self.plugin.close_transport()

    def _batch_limit(self) -> int:
        if self._backoff.failures:
            return 1   # a probe: one small request until the destination answers again
        limit = min(self.settings["batch_size"], self._refusals.batch_size())
        if limit != self._refusal_limit:
            self.log.debug("%s: sending %d readings at a time (with refusals as often as lately, "
                           "%d at a time would send %.1f %% of the rows again)", self, limit,
                           self.settings["batch_size"], 100 * self.settings["batch_size"]
                           * self._refusals.cost / self._refusals.readings)
            self._refusal_limit = limit
        if self._size_cap:
            limit = min(limit, self._size_cap)
        if self._search:
            limit = min(limit, self._search.piece)
        return limit

    def _forget_learned(self) -> None:
        """New settings (another URL, key or server): what was learned about the old one goes."""
        self._size_cap = None
        self._refusals = RefusalRate(self.settings["batch_size"])
        if self._refused_nodes:
            self.log.info("%s: settings changed: node(s) %s will be tried again", self,
                          ", ".join(str(node) for node in self._refused_nodes))
            self._refused_nodes.clear()

    def _deliver(self, batch: List[Frame]) -> None:
        verdicts = [self._verdict(frame) for frame in batch]   # None: to send; else why not
        positions = [i for i, verdict in enumerate(verdicts) if verdict is None]
        sendable = [batch[i] for i in positions]
        try:
            if sendable:
                self.plugin.send(sendable)
        except RejectedError as exc:
            self._on_rejected(batch, verdicts, positions, exc)
        except TooLargeError as exc:
            self._on_too_large(batch, verdicts, positions, exc)
        except AuthError as exc:
            self.queue.release()
            self._on_failure(exc, auth=True)
        except DeliveryError as exc:
            self.queue.release()
            self._on_failure(exc, retry_after=getattr(exc, "retry_after", None))
        except Exception as exc:  # a bug in a plugin must not kill its thread or lose data
            self.queue.release()
            self.log.exception("%s: internal error while sending", self)
            self._on_failure(DeliveryError(f"internal error: {exc!r}"))
        else:
            self._settle(batch, len(batch), verdicts)
            if sendable:   # the destination answered (not so if nothing was to be sent)
                self._on_success()

    def _verdict(self, frame: Frame) -> Optional[str]:
        """Why ``frame`` is not to be sent (the destination refuses it or its node), or None."""
        refused = self._refused_nodes.get(frame.node)
        if refused is not None:
            until, why = refused
            if self.monotonic() < until:
                return why
            del self._refused_nodes[frame.node]
            self.log.info("%s: node %s: trying again after %.0f min", self, frame.node,
                          self.NODE_REFUSAL_MEMORY / 60)
        return self.plugin.check(frame)

    def _settle(self, batch: List[Frame], count: int, verdicts: List[Optional[str]]) -> None:
        """The first ``count`` readings of the batch in flight are done with: let go, then each
        counted once, as delivered (verdict None) or rejected (its verdict says why); not those
        a spool bound dropped while they were in flight (the oldest: counted there)."""
        first = count - self.queue.ack(count)
        delivered = []
        for frame, verdict in zip(batch[first:count], verdicts[first:count]):
            if verdict is None:
                delivered.append(frame)
            else:
                self._count_rejected(frame, verdict)
        if delivered:
            self._count_delivered(delivered)
            self._refusals.sent(len(delivered))
        if self._search:
            self._search.suspects -= count
            if self._search.suspects <= 0:
                self._search = None

    def _count_delivered(self, frames: List[Frame]) -> None:
        self.stats.delivered += len(frames)
        self.stats.last_success = time.time()

    def _count_rejected(self, frame: Frame, why: str) -> None:
        self.stats.dropped["rejected"] += 1
        node = str(frame.node)
        self.rejected_by_node[node] = self.rejected_by_node.get(node, 0) + 1
        self._reject_log("%s: dropped a reading the destination refuses (node %s at %s): %s", self,
                         frame.node, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(frame.time)), why)

    def _on_success(self) -> None:
        if self._backoff.failures or self._auth_failing:
            self._failure_log.reset()
            self.log.info("%s: delivering again after %.0f s of failures; %s",
                          self, time.monotonic() - self._failing_since, self.accounting())
        self._backoff.reset()
        self._failing_since = None
        self._auth_failing = False

    def _on_rejected(self, batch, verdicts, positions, exc: RejectedError) -> None:
        why = str(exc)
        known = exc.delivered is not None and 0 <= exc.delivered < len(positions)
        if not known and len(positions) > 1:
            # Some reading of the batch is refused, the destination does not say which: search.
            self.queue.release()
            self._search = _Search(suspects=len(batch), piece=max(1, math.isqrt(len(positions))))
            self.log.debug("%s: %s; looking for the refused reading, %d at a time",
                           self, why, self._search.piece)
            self._on_success()   # the destination answered: it is up
            return
        refused = positions[exc.delivered if known else 0]
        if exc.node_refused:
            self._refuse_node(batch[refused].node, why)
            self._refusals.refused(0.0)   # its node's readings are not sent again
        else:
            self._refusals.refused(RefusalRate.NAMED if known else RefusalRate.UNNAMED)
        verdicts = list(verdicts)
        verdicts[refused] = why
        self._search = None   # found: batches of the usual size again from the next reading
        self._settle(batch, refused + 1, verdicts)
        self._on_success()

    def _refuse_node(self, node: Node, why: str) -> None:
        self._refused_nodes[node] = (self.monotonic() + self.NODE_REFUSAL_MEMORY, why)
        self.log.warning("%s: node %s is refused by the destination (%s): its readings are dropped "
                         "for %.0f min, or until the settings change", self, node, why,
                         self.NODE_REFUSAL_MEMORY / 60)

    def _on_too_large(self, batch, verdicts, positions, exc: TooLargeError) -> None:
        if len(positions) <= 1:   # one reading too large to ever send: it is the bad one
            self._on_rejected(batch, verdicts, positions, RejectedError(str(exc), delivered=0))
            self._size_cap = None
            return
        self.queue.release()
        self._size_cap = max(1, len(positions) // 2)
        self.log.info("%s: %s; sending %s at a time", self, exc, plural(self._size_cap, "reading"))

    def _on_failure(self, exc: DeliveryError, auth: bool = False,
                    retry_after: Optional[float] = None) -> None:
        self.stats.retries += 1
        self.stats.last_error = str(exc)
        if self._failing_since is None:
            self._failing_since = time.monotonic()
        cap = self._backoff.cap = self.settings["retry_max"]
        # The failure is counted (``state``) before it is logged: who reads the line and then
        # asks the status sees it.
        if auth:
            first = not self._auth_failing
            self._auth_failing = True
            delay = self._backoff.next(cap * self.AUTH_RETRY_FACTOR)
            if first:
                self.log.error("%s: %s; keeping every reading and retrying every %g s",
                               self, exc, cap * self.AUTH_RETRY_FACTOR)
        else:
            delay = self._backoff.next()
            self._failure_log("%s: delivery failed: %s (%s queued; retrying with backoff)",
                              self, exc, plural(len(self.queue), "reading"))
        if retry_after:
            delay = max(delay, min(retry_after, self.RETRY_AFTER_LIMIT))
        if self._draining_until is not None:
            delay = min(delay, max(0.0, self._draining_until - time.monotonic()))
        self.queue.wait(delay)
