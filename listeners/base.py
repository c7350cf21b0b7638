"""The listener contract.

A listener registers its file descriptors (and timers, if it needs any) with the daemon's
event loop in ``open()``, turns the bytes that arrive into frames, hands each frame to
``emit``, and releases everything in ``close()``. It never sleeps, never blocks, and never
talks to a destination: that is the buffers' job, on their own threads.
"""

import logging
import time
from dataclasses import dataclass
from typing import Callable, FrozenSet, Optional, Sequence, Union

from gateway.eventloop import EventLoop
from gateway.frame import Frame, FrameError, Number, RawFrame, parse_values_line
from gateway.lines import BadLine
from gateway.logs import LogThrottle
from gateway.nodes import NodeDecoder
from gateway.plugin import Plugin


@dataclass
class ListenerStats:
    frames_good: int = 0
    frames_bad: int = 0
    frames_unlisted: int = 0
    last_frame_time: Optional[float] = None


class Listener(Plugin):
    KIND = "listener"
    SPEC = """
    max_line = integer(min=16, max=1048576, default=4096)
    nodelistonly = boolean(default=False)
    """
    SAMPLE_COMMON = """
    # Settings every listener has:
    #   max_line = 4096      longest accepted line in bytes; longer lines are logged, counted
    #                        and dropped
    #   nodelistonly = False
    #                        True: drop frames from nodes that have no section in [nodes]
    """
    LIVE_SETTINGS: FrozenSet[str] = frozenset({"nodelistonly"})
    """Settings ``update()`` applies without re-creating the listener (see ``apply_settings``)."""
    gateway_dirs = ("", "")
    """``[gateway] runtime_dir`` and ``state_dir`` as written ('' = the default places), for a
    listener that keeps state across restarts (a pulse total); set before ``open()``."""

    def __init__(self, name: str, settings: dict, loop: EventLoop,
                 emit: Callable[[Union[Frame, RawFrame]], None], nodes: Optional[NodeDecoder] = None):
        super().__init__(name, settings)
        self.loop = loop
        self._emit = emit
        self.nodes = nodes if nodes is not None else NodeDecoder()
        self.stats = ListenerStats()
        self.bad_input = LogThrottle(self.log, logging.WARNING, 60.0, schedule=loop.call_later)
        self.unlisted = LogThrottle(self.log, logging.WARNING, 60.0, schedule=loop.call_later)

    # -- the contract -------------------------------------------------------------------
    def open(self) -> None:
        """Start reading: register file descriptors and timers with the loop."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop reading and release every descriptor and timer."""
        self.bad_input.flush()
        self.unlisted.flush()

    def update(self, settings: dict) -> bool:
        """Apply changed settings live; return False if the listener must be re-created.

        Settings named in ``LIVE_SETTINGS`` are applied by ``apply_settings``; a change to any
        other setting re-creates the listener.
        """
        new = dict(settings)
        changed = {key for key in set(new) | set(self.settings) if new.get(key) != self.settings.get(key)}
        if changed - self.LIVE_SETTINGS:
            return False
        self.settings = new
        if changed:
            self.apply_settings(changed)
        return True

    def apply_settings(self, changed: set) -> None:
        """Hook: ``self.settings`` holds new values for the ``changed`` live settings."""

    def parse(self, line: str):
        """``(node, values)`` from one text line; raises FrameError for a line that is not one."""
        return parse_values_line(line)

    # -- shared helpers -----------------------------------------------------------------
    def handle_line(self, line) -> None:
        """Handle a line (or BadLine) from a stream, counting bad input."""
        if isinstance(line, BadLine):
            self.reject(f"{line.reason} line", line.preview)
            return
        stripped = line.strip()
        if stripped:
            self.handle_text(stripped)

    def handle_text(self, text: str) -> None:
        """Parse one non-empty, stripped line and emit its frame; a subclass may override."""
        try:
            node, values = self.parse(text)
        except FrameError as exc:
            self.reject(str(exc), text)
            return
        self.emit(Frame(node, values, time.time(), None, None, self.name))

    def emit(self, frame: Union[Frame, RawFrame]) -> None:
        """Pass a frame on to the gateway (decoder, then buffers), unless ``nodelistonly`` drops it."""
        if self.settings.get("nodelistonly") and not self.nodes.is_listed(frame.node):
            self.stats.frames_unlisted += 1
            self.unlisted("%s: dropped a frame from node %s: it has no [nodes] section and "
                          "nodelistonly = True", self, frame.node)
            return
        self.stats.frames_good += 1
        self.stats.last_frame_time = frame.time
        self._emit(frame)

    def status_details(self) -> dict:
        """What ``/status`` shows for this listener beyond the frame counts (per device, say)."""
        return {}

    def reject(self, reason: str, sample) -> None:
        """Count and (rate-limited) log a piece of input that is not a frame."""
        self.stats.frames_bad += 1
        text = sample if isinstance(sample, str) else bytes(sample).decode("utf-8", "backslashreplace")
        self.bad_input("%s: dropped bad input (%s): %.80s", self, reason, text)


class Transmitter:
    """A listener that can send values to radio nodes declares it by deriving from this too;
    the gateway routes ``transmit`` requests (from buffers, the repeater) to such listeners."""

    def send_frame(self, node: int, values: Sequence[Number]) -> bool:
        """Send ``values`` to radio node ``node`` (on the loop thread); False if it could not be
        queued. Raises ValueError for a node or values that cannot be sent."""
        raise NotImplementedError

