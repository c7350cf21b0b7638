"""The listener contract.

A listener registers its file descriptors (and timers, if it needs any) with the daemon's
event loop in ``open()``, turns the bytes that arrive into frames, hands each frame to
``emit``, and releases everything in ``close()``. It never sleeps, never blocks, and never
talks to a destination: that is the buffers' job, on their own threads.
"""

import logging
import time
from dataclasses import dataclass
from typing import Callable, Optional

from gateway.eventloop import EventLoop
from gateway.frame import Frame, FrameError, parse_values_line
from gateway.lines import BadLine
from gateway.logs import LogThrottle
from gateway.plugin import Plugin


@dataclass
class ListenerStats:
    frames_good: int = 0
    frames_bad: int = 0
    last_frame_time: Optional[float] = None


class Listener(Plugin):
    KIND = "listener"
    SPEC = """
    max_line = integer(min=16, max=1048576, default=4096)
    """

    def __init__(self, name: str, settings: dict, loop: EventLoop, emit: Callable[[Frame], None]):
        super().__init__(name, settings)
        self.loop = loop
        self._emit = emit
        self.stats = ListenerStats()
        self.bad_input = LogThrottle(self.log, logging.WARNING, 60.0, schedule=loop.call_later)

    # -- the contract -------------------------------------------------------------------
    def open(self) -> None:
        """Start reading: register file descriptors and timers with the loop."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop reading and release every descriptor and timer."""
        self.bad_input.flush()

    def update(self, settings: dict) -> bool:
        """Apply changed settings live; return False if the listener must be re-created.

        The default applies nothing live; a subclass overrides this for the settings it can
        change without reopening.
        """
        return dict(settings) == self.settings

    def parse(self, line: str):
        """``(node, values)`` from one text line; raises FrameError for a line that is not one."""
        return parse_values_line(line)

    # -- shared helpers -----------------------------------------------------------------
    def handle_line(self, line) -> None:
        """Parse a line (or BadLine) from a stream and emit the frame, counting bad input."""
        if isinstance(line, BadLine):
            self.reject(f"{line.reason} line", line.preview)
            return
        stripped = line.strip()
        if not stripped:
            return
        try:
            node, values = self.parse(stripped)
        except FrameError as exc:
            self.reject(str(exc), stripped)
            return
        self.emit(Frame(node, values, time.time(), None, None, self.name))

    def emit(self, frame: Frame) -> None:
        self.stats.frames_good += 1
        self.stats.last_frame_time = frame.time
        self._emit(frame)

    def reject(self, reason: str, sample) -> None:
        """Count and (rate-limited) log a piece of input that is not a frame."""
        self.stats.frames_bad += 1
        text = sample if isinstance(sample, str) else repr(sample)
        self.bad_input("%s: dropped bad input (%s): %.80s", self, reason, text)
