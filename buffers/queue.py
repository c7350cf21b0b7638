"""The bounded queue between the event loop (which appends) and a buffer's sender thread."""

import itertools
import threading
from collections import deque
from typing import List, Optional


class MemoryQueue:
    """A FIFO of readings, bounded by ``max_items``; the oldest is dropped when full.

    The loop thread appends and never blocks. The sender thread ``take()``s a batch from the
    head (the batch stays queued while it is being delivered), then ``ack()``s it once the
    destination has it or ``release()``s it to try again. A reading in flight is never
    dropped for overflow: the oldest reading behind the in-flight batch goes instead.
    """

    def __init__(self, max_items: int):
        self.max_items = max_items
        self._items: deque = deque()
        self._in_flight = 0
        self._interrupted = False
        self._ready = threading.Condition(threading.Lock())

    def put(self, item) -> int:
        """Append ``item``; return how many readings were dropped to make room (0 or more)."""
        dropped = 0
        with self._ready:
            items = self._items
            while len(items) >= self.max_items:
                if len(items) > self._in_flight:
                    del items[self._in_flight]
                    dropped += 1
                else:  # everything queued is in flight: the new reading is the one to drop
                    return dropped + 1
            items.append(item)
            self._ready.notify()
        return dropped

    def take(self, limit: int, block: bool = True) -> Optional[List]:
        """Return up to ``limit`` readings from the head, first waiting for some if ``block``.

        Returns None when there is nothing to take, or when ``interrupt()`` woke the caller;
        the caller checks why.
        """
        with self._ready:
            if block and not self._items and not self._interrupted:
                self._ready.wait()
            if not self._items or self._interrupted:
                self._interrupted = False
                return None
            count = min(limit, len(self._items))
            self._in_flight = count
            return list(itertools.islice(self._items, count))

    def ack(self, count: int) -> None:
        """The first ``count`` readings of the batch in flight were delivered (or given up)."""
        with self._ready:
            for _ in range(min(count, len(self._items))):
                self._items.popleft()
            self._in_flight = 0

    def release(self) -> None:
        """The batch in flight was not delivered; it stays at the head for the next try."""
        with self._ready:
            self._in_flight = 0

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for ``interrupt()``; True if it came."""
        with self._ready:
            if not self._interrupted:
                self._ready.wait(timeout)
            interrupted, self._interrupted = self._interrupted, False
            return interrupted

    def interrupt(self) -> None:
        """Wake a sender blocked in ``take()`` (to stop, or to notice new settings)."""
        with self._ready:
            self._interrupted = True
            self._ready.notify_all()

    def clear(self) -> int:
        with self._ready:
            count = len(self._items)
            self._items.clear()
            self._in_flight = 0
            return count

    def __len__(self) -> int:
        return len(self._items)

    def oldest(self):
        """The reading at the head, or None."""
        try:
            return self._items[0]
        except IndexError:
            return None

