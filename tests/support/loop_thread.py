"""The gateway's event loop on a thread of its own, with the frames listeners emit collected, so
a test can construct one listener (no daemon) and wait for what it emits."""

import logging
import threading

from gateway.eventloop import EventLoop
from tests.support.proclog import WAIT


class LoopThread:
    def __init__(self):
        self.loop = EventLoop()
        self.frames = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self.loop.run, name="test-loop", daemon=True)

    def __enter__(self) -> "LoopThread":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.loop.stop()
        self._thread.join(WAIT)
        self.loop.close()

    def emit(self, frame) -> None:
        with self._cond:
            self.frames.append(frame)
            self._cond.notify_all()

    def wait_for(self, predicate, what: str = "the frames expected"):
        """Block until ``predicate(frames)`` is true; return the frames (AssertionError after WAIT)."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self.frames), WAIT):
                raise AssertionError(f"{what} did not come; frames: {self.frames}")
            return list(self.frames)

    def on_loop(self, fn):
        """Run ``fn`` on the loop thread and return its result."""
        done, box = threading.Event(), {}

        def run():
            box["value"] = fn()
            done.set()

        self.loop.call_soon_threadsafe(run)
        assert done.wait(WAIT)
        return box["value"]


class LogWatch(logging.Handler):
    """The gateway's log lines (any thread), for a test to wait on one: ``with LogWatch() as log``."""

    def __init__(self, logger: str = "oemgateway"):
        super().__init__(logging.DEBUG)
        self.logger = logging.getLogger(logger)
        self.lines = []
        self._cond = threading.Condition()

    def __enter__(self) -> "LogWatch":
        self._level = self.logger.level
        self.logger.setLevel(logging.DEBUG)
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        self.logger.removeHandler(self)
        self.logger.setLevel(self._level)

    def emit(self, record) -> None:
        with self._cond:
            self.lines.append(record.getMessage())
            self._cond.notify_all()

    def count(self, text: str) -> int:
        with self._cond:
            return sum(text in line for line in self.lines)

    def wait_for(self, text: str, count: int = 1) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: sum(text in line for line in self.lines) >= count, WAIT):
                raise AssertionError(f"{text!r} was not logged {count} times: {self.lines}")
