"""Waiting longer after each failure: one helper for every retry loop (a destination that fails,
a serial port that will not open, a listener that could not start)."""

import random
from typing import Callable, Optional


class Backoff:
    """Waits that double after each failure, from ``first`` up to ``cap`` seconds, until
    ``reset()`` (after a success).

    ``jitter``: the share of each wait that is random. 0: exactly the doubling waits (a local
    device: nobody else retries in step with us); 1: "full jitter", anywhere from 0 to the
    wait; 0.5: between half and all of it (many gateways behind one failed server do not come
    back in step, and none retries at once).
    """

    def __init__(self, first: float, cap: float, jitter: float = 0.0,
                 rng: Callable[[], float] = random.random):
        self.first = first
        self.cap = cap
        self.jitter = jitter
        self.failures = 0   # since the last reset
        self._rng = rng

    def peek(self) -> float:
        """The wait the next failure gets, before jitter (for a log line)."""
        return min(self.cap, self.first * 2 ** min(self.failures, 30))

    def next(self, ceiling: Optional[float] = None) -> float:
        """Count a failure; the seconds to wait before trying again. ``ceiling``: wait about
        that long instead of the doubling wait (a failure that only a change elsewhere cures)."""
        wait = self.peek() if ceiling is None else ceiling
        self.failures += 1
        return self.spread(wait)

    def spread(self, wait: float) -> float:
        """``wait`` with its random share."""
        return wait * (1.0 - self.jitter * self._rng()) if self.jitter else wait

    def reset(self) -> None:
        self.failures = 0
