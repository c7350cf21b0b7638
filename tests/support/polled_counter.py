"""A polling device written the way a device author writes one: one file, one ``poll()``.

It reads a "meter" that counts up (its node and first value), so tests can follow its readings
from the poll to a buffer. ``gate``, when set, is an Event each poll waits for (a slow or hung
device); ``fail_with``, when set, is raised instead of reading (a silent device).
"""

import threading

from listeners.polling import PollingListener


class CounterListener(PollingListener):
    SPEC = """
    node = integer(min=0, max=255, default=30)
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.count = 0
        self.gate = None
        self.fail_with = None
        self.entered = threading.Semaphore(0)   # released when a poll begins
        self.waiting = threading.Semaphore(0)   # released when a poll begins to wait at the gate
        self.released = threading.Event()

    def poll(self):
        self.entered.release()
        gate = self.gate
        if gate is not None:
            self.waiting.release()
            gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        self.count += 1
        return [self.frame(self.settings["node"], [self.count, 230.5], ["count", "vrms"])]

    def release(self):
        self.released.set()
