"""Is the system clock right? A Pi without a real-time clock boots with a stale clock and
jumps to the right time when NTP synchronises it.

Readings received before that jump carry a wrong wall-clock time. The monotonic clock does
not jump, so the error is known exactly once the clock is synchronised: it is how much
``wall - monotonic`` changed. The gateway then shifts those readings by that amount.
"""

import ctypes
import functools
import logging
import threading
import time
from typing import Callable, Optional, Tuple

from gateway.logs import plural

log = logging.getLogger("oemgateway.clock")

TIME_ERROR = 5       # adjtimex(2): the clock is not synchronised
STEP_THRESHOLD = 1.0  # seconds; smaller corrections are NTP's ordinary slewing


@functools.lru_cache(maxsize=1)
def _adjtimex() -> Optional[Callable]:
    """libc's adjtimex, looked up once; None where there is none. The process's own symbols
    (libc among them) are searched first: ``ctypes.util.find_library`` would run ``ldconfig``
    and import 1.5 MB of modules (shutil, subprocess, tempfile, bz2, lzma) kept for good."""
    for library in (None, "libc.so.6"):
        try:
            return ctypes.CDLL(library, use_errno=True).adjtimex
        except (OSError, AttributeError):
            continue
    return None


def kernel_says_synchronised() -> bool:
    """adjtimex(2) with no changes: False while the kernel reports the clock unsynchronised.

    Where that cannot be asked (not Linux), the clock is assumed right.
    """
    adjtimex = _adjtimex()
    if adjtimex is None:
        return True
    state = adjtimex(ctypes.create_string_buffer(512))   # struct timex, modes = 0: read only
    return state != TIME_ERROR and state >= 0


PROBES = {
    "auto": kernel_says_synchronised,
    "trusted": lambda: True,
    "untrusted": lambda: False,
}


class ClockWatch:
    """Notices readings stamped while the clock was unsynchronised, and the step that fixes them.

    ``note(seq)`` is called for each accepted reading; it returns ``(first_seq, last_seq,
    shift)`` once the clock has been synchronised after readings were stamped without it.
    The probe is asked when the watch is made and whenever ``use()`` gives it another one, so
    the state is known before the first reading is stamped or sent; after that at most once
    per ``recheck`` seconds. Buffers' sender threads ask too: a lock makes every thread wait
    for an answer being fetched instead of taking the previous one.
    """

    def __init__(self, probe: Callable[[], bool] = kernel_says_synchronised,
                 wall: Callable[[], float] = time.time, mono: Callable[[], float] = time.monotonic,
                 recheck: float = 1.0):
        self.wall = wall
        self.mono = mono
        self.recheck = recheck
        self._lock = threading.Lock()
        self._synced = True
        self._unsynced: Optional[Tuple[int, int, float]] = None   # first seq, last seq, offset
        self.use(probe)

    def use(self, probe: Callable[[], bool]) -> None:
        """Take ``probe`` to judge the clock from now on, and ask it at once."""
        with self._lock:
            self.probe = probe
            self._ask()

    def synchronised(self) -> bool:
        if self.mono() - self._checked_at < self.recheck:
            return self._synced   # (asked for every reading: no lock while the answer is fresh)
        with self._lock:
            if self.mono() - self._checked_at >= self.recheck:
                self._ask()
            return self._synced

    def _ask(self) -> None:
        was, self._synced = self._synced, self.probe()
        self._checked_at = self.mono()
        if was and not self._synced:
            log.warning("the system clock is not synchronised: readings are time-stamped now "
                        "and corrected when it is")

    @property
    def pending(self) -> bool:
        """Readings stamped while unsynchronised are waiting for a correction."""
        return self._unsynced is not None

    def note(self, seq: Optional[int]) -> Optional[Tuple[int, int, float]]:
        """Record reading ``seq`` (None: just look at the clock); see the class docstring."""
        if seq is None and self._unsynced is not None:
            with self._lock:
                self._checked_at = float("-inf")
        if not self.synchronised():
            if seq is None:
                return None
            offset = self.wall() - self.mono()
            if self._unsynced is None:
                self._unsynced = (seq, seq, offset)
            else:
                self._unsynced = (self._unsynced[0], seq, self._unsynced[2])
            return None
        if self._unsynced is None:
            return None
        first, last, before = self._unsynced
        self._unsynced = None
        shift = (self.wall() - self.mono()) - before
        if abs(shift) < STEP_THRESHOLD:
            return None
        log.info("the system clock is synchronised: it moved %+.1f s; the %s received "
                 "before are re-timed by that much", shift, plural(last - first + 1, "reading"))
        return first, last, shift
