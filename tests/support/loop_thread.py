"""The daemon's event loop on a thread of its own, for tests of listeners in the test process
(the ``running`` fixture):
``call`` runs a function on the loop thread and waits for it; ``until`` waits for a condition
checked on the loop thread; frames the listener emits are collected in ``frames``."""

import threading

from gateway.eventloop import EventLoop
from tests.support.proclog import WAIT


class LoopThread:
    """The daemon's event loop on a thread of its own; ``call`` runs a function on it and waits."""

    def __init__(self):
        self.loop = EventLoop()
        self.frames = []
        self.got = threading.Condition()
        self.thread = threading.Thread(target=self.loop.run, daemon=True)
        self.thread.start()

    def emit(self, frame):
        with self.got:
            self.frames.append(frame)
            self.got.notify_all()

    def call(self, fn):
        done, box = threading.Event(), {}

        def run():
            box["value"] = fn()
            done.set()

        self.loop.call_soon_threadsafe(run)
        assert done.wait(WAIT), "the event loop did not answer"
        return box["value"]

    def until(self, condition):
        """Wait until ``condition()`` (checked on the loop thread) holds."""
        got = threading.Event()

        def check():
            if condition():
                got.set()
            else:
                self.loop.call_later(0.01, check)

        self.loop.call_soon_threadsafe(check)
        assert got.wait(WAIT), "the condition never held"

    def stop(self):
        self.loop.stop()
        self.thread.join(WAIT)
        self.loop.close()
