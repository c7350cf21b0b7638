"""The buffer contract, and everything every buffer gets for free.

A buffer plugin implements *how to deliver one batch*: ``send(batch)`` returns when the
destination has every reading of the batch, or raises one of the errors below to say what went
wrong. The base class owns the rest, once for every destination: the bounded queue, the sender
thread, batching, splitting a refused batch to find the bad reading, retries with exponential
backoff and full jitter, and the counters (accepted = delivered + queued + dropped).
"""

import logging
import random
import threading
import time
from typing import Callable, List, Optional

from gateway.clock import PROBES, ClockWatch
from gateway.frame import Frame
from gateway.logs import LogThrottle, plural
from gateway.plugin import Plugin
from buffers.spool import Cursor


class DeliveryError(Exception):
    """Base of the errors ``send()`` raises; the message is shown in the log and status."""


class TransientError(DeliveryError):
    """Try again later (server down, timeout, 5xx). ``retry_after``: seconds the server asked for."""

    def __init__(self, message: str, retry_after: Optional[float] = None):
        super().__init__(message)
        self.retry_after = retry_after


class RejectedError(DeliveryError):
    """The destination will never accept this batch as it is (a bad reading in it)."""


class AuthError(DeliveryError):
    """The destination refuses us (wrong key, wrong URL): keep everything, retry slowly."""


class TooLargeError(DeliveryError):
    """The batch is too large for the destination: send smaller ones."""


class Buffer(Plugin):
    """Queues frames and delivers them on its own thread; subclasses implement ``send()``."""

    KIND = "buffer"
    SPEC = """
    active = boolean(default=True)
    max_items = integer(min=0, max=100000000, default=0)
    batch_size = integer(min=1, max=100000, default=500)
    retry_max = float(min=0.01, max=86400, default=30)
    """
    RETRY_BASE = 1.0  # seconds; the first retry waits up to this, doubling up to retry_max
    # Set by the daemon before start(), for plugins that need them (None otherwise): the
    # ``[nodes]`` decoder (``nodes.table`` is the current NodeTable), and
    # ``transmit(node, values, listener=None)``, which sends values to a radio node through the
    # listeners that can transmit; it may be called from any thread and never blocks.
    nodes = None
    transmit: Optional[Callable[..., None]] = None

    def __init__(self, name: str, settings: dict, queue: Cursor, clock: Optional[ClockWatch] = None):
        super().__init__(name, settings)
        self.clock = clock or ClockWatch(PROBES["trusted"])   # is our wall clock right?
        self.queue = queue
        self.queue.max_items = self.settings["max_items"]
        self.stats = queue.stats
        self._pending_settings: Optional[dict] = None
        self._draining_until: Optional[float] = None
        self._thread: Optional[threading.Thread] = None
        self._failures = 0
        self._failing_since: Optional[float] = None
        self._auth_failing = False
        self._split_limit: Optional[int] = None  # while searching a refused batch for its bad reading
        self._suspects = 0                       # readings at the head that belong to that batch
        self._failure_log = LogThrottle(self.log, logging.WARNING, 300.0)
        self._reject_log = LogThrottle(self.log, logging.WARNING, 60.0)
        self._forget_at_exit = False
        self.configure()
        self.recording = self._should_record()
        self.queue.spool.set_recording(self.queue, self.recording)

    # -- what a plugin implements -------------------------------------------------------
    def configure(self) -> None:
        """(Re)build whatever the plugin derives from ``self.settings``; runs on the sender thread
        after a settings change."""

    def send(self, batch: List[Frame]) -> None:
        """Deliver every frame of ``batch`` or raise a DeliveryError."""
        raise NotImplementedError

    def check(self, frame: Frame) -> Optional[str]:
        """Why the destination can never take ``frame`` (it is then dropped as rejected), or None."""
        return None

    def inactive_reason(self) -> Optional[str]:
        """Why this buffer cannot record yet (e.g. no API key), or None when it can."""
        return None

    def close_transport(self) -> None:
        """Release connections and files; runs on the sender thread when it ends."""

    # -- used by the daemon (loop thread) -----------------------------------------------
    def why_inactive(self) -> Optional[str]:
        """Why this buffer records nothing (None when it records)."""
        return self.inactive_reason() or (None if self.settings["active"] else "active = False")

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
        self.settings = dict(settings)
        self.recording = self._should_record()
        self.queue.spool.set_recording(self.queue, self.recording)
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
        return "retrying" if self._failures else "ok"

    # -- the sender thread --------------------------------------------------------------
    def _should_record(self) -> bool:
        return self.why_inactive() is None

    def _run(self) -> None:
        try:
            while True:
                if self._pending_settings is not None:
                    self._pending_settings = None
                    self.configure()
                draining = self._draining_until is not None
                if draining and (not len(self.queue) or not self._should_record()
                                 or time.monotonic() >= self._draining_until):
                    return
                if not draining and not self.recording:
                    self.queue.wait(None)  # paused until the settings change
                    continue
                batch = self.queue.take(self._split_limit or self.settings["batch_size"],
                                        block=not draining)
                if batch:
                    self._deliver(batch)
        finally:
            if self._forget_at_exit:
                self.queue.forget()   # what it could not deliver in time is dropped, and counted
            self._failure_log.flush()
            self._reject_log.flush()
            self.close_transport()

    def _deliver(self, batch: List[Frame]) -> None:
        sendable = []
        for frame in batch:
            reason = self.check(frame)
            if reason:
                self._drop_rejected(frame, reason)
            else:
                sendable.append(frame)
        try:
            if sendable:
                self.send(sendable)
        except RejectedError as exc:
            self._on_rejected(batch, sendable, exc)
        except TooLargeError as exc:
            if len(sendable) <= 1:   # one reading too large to ever send: it is the bad one
                self._on_rejected(batch, sendable, RejectedError(str(exc)))
                return
            self.queue.release()
            self._split_limit = max(1, len(batch) // 2)
            self._suspects = max(self._suspects, len(batch))
            self.log.info("%s: %s; sending %s at a time", self, exc, plural(self._split_limit, "reading"))
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
            self.queue.ack(len(batch))
            self._on_success(len(sendable))

    def _on_success(self, delivered: int) -> None:
        self.stats.delivered += delivered
        self.stats.last_success = time.time()
        if self._suspects:
            self._suspects = max(0, self._suspects - delivered)
            if not self._suspects:
                self._split_limit = None
        if self._failures or self._auth_failing:
            self._failure_log.reset()
            self.log.info("%s: delivering again after %.0f s of failures; %s",
                          self, time.monotonic() - self._failing_since, self.accounting())
        self._failures = 0
        self._failing_since = None
        self._auth_failing = False

    def _on_rejected(self, batch, sendable, exc: RejectedError) -> None:
        if len(sendable) <= 1:
            self.queue.ack(len(batch))
            for frame in sendable:
                self._drop_rejected(frame, str(exc))
            if self._suspects:
                self._suspects = max(0, self._suspects - len(batch))
                if not self._suspects:
                    self._split_limit = None
            return
        # Somewhere in the batch is a reading the destination refuses: send halves to find it.
        self.queue.release()
        self._split_limit = max(1, len(batch) // 2)
        self._suspects = max(self._suspects, len(batch))

    def _drop_rejected(self, frame: Frame, reason: str) -> None:
        self.stats.dropped["rejected"] += 1
        self._reject_log("%s: dropped a reading the destination refuses (node %s at %s): %s",
                         self, frame.node, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(frame.time)), reason)

    def _on_failure(self, exc: DeliveryError, auth: bool = False,
                    retry_after: Optional[float] = None) -> None:
        self.stats.retries += 1
        self.stats.last_error = str(exc)
        if self._failing_since is None:
            self._failing_since = time.monotonic()
        self._failures += 1
        cap = self.settings["retry_max"]
        if auth:
            if not self._auth_failing:
                self.log.error("%s: %s; keeping every reading and retrying every %g s",
                               self, exc, cap)
            self._auth_failing = True
            delay = cap
        else:
            self._failure_log("%s: delivery failed: %s (%s queued; retrying with backoff)",
                              self, exc, plural(len(self.queue), "reading"))
            delay = random.uniform(0, min(cap, self.RETRY_BASE * 2 ** (self._failures - 1)))
            if retry_after:
                delay = max(delay, min(retry_after, cap))
        if self._draining_until is not None:
            delay = min(delay, max(0.0, self._draining_until - time.monotonic()))
        self.queue.wait(delay)
