"""The daemon's one event loop: selectors for file descriptors, a heap for timers.

Nothing here sleeps. The loop blocks in ``select()`` until a descriptor is readable, the next
timer is due, a signal arrives or another thread asks for a callback; with nothing to do the
process uses no CPU.
"""

import heapq
import itertools
import logging

import selectors
import signal
import socket
import time
from collections import deque
from typing import Callable, Dict, List, Optional

log = logging.getLogger("oemgateway.eventloop")

_THREAD_WAKEUP = 0  # byte written by call_soon_threadsafe; signals write their own number
MAX_WAIT = 3600.0   # s: select() wakes at least this often, whatever the next timer


class Timer:
    """A callback scheduled on the loop; ``cancel()`` it to forget it."""

    __slots__ = ("when", "callback", "cancelled")

    def __init__(self, when: float, callback: Callable[[], None]):
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class EventLoop:
    """Runs reader callbacks, timers, signal handlers and cross-thread calls on one thread."""

    def __init__(self):
        self._selector = selectors.DefaultSelector()
        self._timers: List = []
        self._order = itertools.count()
        self._calls: deque = deque()
        self._signal_handlers: Dict[int, Callable[[], None]] = {}
        self._running = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, self._on_wakeup)

    # -- registration -------------------------------------------------------------------
    def add_reader(self, fileobj, callback: Callable[[], None]) -> None:
        """Call ``callback()`` whenever ``fileobj`` is readable."""
        self._selector.register(fileobj, selectors.EVENT_READ, callback)

    def remove_reader(self, fileobj) -> None:
        """Stop watching ``fileobj``; harmless if it was not watched."""
        try:
            self._selector.unregister(fileobj)
        except (KeyError, ValueError):
            pass

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback()`` on the loop after ``delay`` seconds (monotonic clock)."""
        timer = Timer(time.monotonic() + max(0.0, delay), callback)
        heapq.heappush(self._timers, (timer.when, next(self._order), timer))
        return timer

    def call_soon(self, callback: Callable[[], None]) -> None:
        """Run ``callback()`` at the end of this loop iteration (from the loop thread only)."""
        self._calls.append(callback)

    def call_soon_threadsafe(self, callback: Callable[[], None]) -> None:
        """Run ``callback()`` on the loop thread; safe to call from any thread."""
        self._calls.append(callback)
        self._write_wakeup(_THREAD_WAKEUP)

    def add_signal_handler(self, signum: int, callback: Callable[[], None]) -> None:
        """Run ``callback()`` on the loop when the process receives ``signum``."""
        self._signal_handlers[signum] = callback
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        signal.signal(signum, _ignore_in_handler)

    # -- running ------------------------------------------------------------------------
    def run(self) -> None:
        """Run until ``stop()`` is called."""
        self._running = True
        while self._running:
            for key, _ in self._selector.select(self._next_timeout()):
                self._guarded(key.data)
            self._run_due_timers()

    def stop(self) -> None:
        """Make ``run()`` return after the current iteration; safe from any thread."""
        self._running = False
        self._write_wakeup(_THREAD_WAKEUP)

    def close(self) -> None:
        if self._signal_handlers:
            signal.set_wakeup_fd(-1)
            for signum in self._signal_handlers:
                signal.signal(signum, signal.SIG_DFL)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    # -- internals ----------------------------------------------------------------------
    def _next_timeout(self) -> Optional[float]:
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        if self._calls:
            return 0
        if not self._timers:
            return None
        # A timer days away (a setting at its maximum) must not overflow select()'s timeout.
        return min(max(0.0, self._timers[0][0] - time.monotonic()), MAX_WAIT)

    def _run_due_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            timer = heapq.heappop(self._timers)[2]
            if not timer.cancelled:
                self._guarded(timer.callback)
        while self._calls:
            self._guarded(self._calls.popleft())

    def _on_wakeup(self) -> None:
        try:
            data = self._wake_r.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        for signum in set(data):
            handler = self._signal_handlers.get(signum)
            if handler is not None:
                self._guarded(handler)

    def _write_wakeup(self, byte: int) -> None:
        try:
            self._wake_w.send(bytes((byte,)))
        except (BlockingIOError, OSError):
            pass  # the loop has a wake-up pending already, or is closed

    @staticmethod
    def _guarded(callback: Callable[[], None]) -> None:
        """One faulty callback must never stop the loop that reads every port."""
        try:
            callback()
        except Exception:
            log.exception("internal error in %s (the gateway carries on)",
                          getattr(callback, "__qualname__", type(callback).__name__))


def _ignore_in_handler(signum, frame) -> None:
    """Python-level handler: the real work happens on the loop, woken by the wakeup fd."""


