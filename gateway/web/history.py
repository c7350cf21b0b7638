"""The recent history of every input, for the page's charts, kept while the page is closed.

Per input, the last 24 hours at 1-minute resolution: each slot holds the mean of the values the
node sent in that minute, as a 32-bit float (7 significant digits: plenty for a chart). The
slots are a ring: a minute's slot is ``minute % 1440``, and the node's own ring of minute
numbers says which minute a slot holds, so nothing is ever shifted, trimmed or timed: work is
done only when a frame arrives (a few array writes), none while the gateway is idle.

The bound: ``MAX_NODES`` nodes (the least recently heard is forgotten) × ``MAX_INPUTS`` inputs
each; per node 1440 × (4 + 2) bytes (its minute numbers and frame counts), per input 1440 × 4
bytes. 50 nodes × 10 inputs: 50 × 8.4 KiB + 500 × 5.6 KiB = 3.2 MiB (``bench/web.py``
measures it).
"""

import array
import math
import threading
from collections import OrderedDict
from typing import Dict, Mapping, Optional

STEP = 60            # seconds per slot
SLOTS = 24 * 60      # 24 hours of slots
MAX_NODES = 100
MAX_INPUTS = 32      # per node; an emonTx has 7 to 15


class _NodeHistory:
    """One node's ring: the minute each slot holds, the frames counted in it, each input's mean."""

    __slots__ = ("minutes", "counts", "inputs", "last_time", "interval", "last_frame")

    def __init__(self):
        self.minutes = array.array("i", [-1]) * SLOTS
        self.counts = array.array("H", [0]) * SLOTS
        self.inputs: Dict[str, array.array] = {}
        self.last_time: Optional[float] = None
        self.interval: Optional[float] = None   # seconds between the node's last two frames
        self.last_frame = None                  # the last Frame (which destinations it is for)

    def add(self, values: Mapping[str, float], when: float) -> None:
        if self.last_time is not None and when > self.last_time:
            self.interval = when - self.last_time
        self.last_time = when
        minute = int(when // STEP)
        slot = minute % SLOTS
        if self.minutes[slot] != minute:
            self.minutes[slot] = minute
            self.counts[slot] = 0
        count = self.counts[slot] = min(self.counts[slot] + 1, 65535)
        for name, value in values.items():
            series = self.inputs.get(name)
            if series is None:
                if len(self.inputs) >= MAX_INPUTS:
                    continue
                series = self.inputs[name] = array.array("f", [math.nan]) * SLOTS
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            previous = series[slot]
            series[slot] = value if count == 1 or math.isnan(previous) else previous + (value - previous) / count

    def series(self, now: float, minutes: int) -> dict:
        last = int(now // STEP)
        first = last - minutes + 1
        valid = [(m, m % SLOTS) for m in range(first, last + 1)]
        out = {}
        for name, values in self.inputs.items():
            points = [None if self.minutes[slot] != m or math.isnan(values[slot]) else float(f"{values[slot]:.7g}")
                      for m, slot in valid]
            out[name] = points
        return {"start": first * STEP, "step": STEP, "inputs": out}

    def nbytes(self) -> int:
        arrays = [self.minutes, self.counts, *self.inputs.values()]
        return sum(a.itemsize * len(a) for a in arrays)


class InputHistory:
    """Every node's recent history. ``record`` runs on the event loop's thread (as each frame is
    decoded); the page's requests read it from the HTTP server's threads."""

    def __init__(self):
        self._nodes: "OrderedDict[str, _NodeHistory]" = OrderedDict()
        self._lock = threading.Lock()

    def record_frame(self, node: str, frame) -> None:
        """Record a decoded Frame of node id ``node`` (``NodeDecoder.on_decoded``)."""
        self.record(node, frame.named_values(), frame.time, frame)

    def record(self, node: str, values: Optional[Mapping[str, float]], when: float, frame=None) -> None:
        if not values:
            return
        with self._lock:
            history = self._nodes.get(node)
            if history is None:
                history = self._nodes[node] = _NodeHistory()
                if len(self._nodes) > MAX_NODES:
                    self._nodes.popitem(last=False)
            else:
                self._nodes.move_to_end(node)
            history.add(values, when)
            history.last_frame = frame

    def series(self, now: float, minutes: int = SLOTS, node: Optional[str] = None) -> Dict[str, dict]:
        """Per node (or only ``node``), the last ``minutes`` minutes: ``{"start", "step",
        "inputs": {name: [mean or None per minute]}}``."""
        minutes = max(1, min(SLOTS, int(minutes)))
        with self._lock:
            return {name: h.series(now, minutes) for name, h in self._nodes.items() if node in (None, name)}

    def intervals(self) -> Dict[str, Optional[float]]:
        """Per node, the seconds between its last two frames (None after one frame)."""
        with self._lock:
            return {name: h.interval for name, h in self._nodes.items()}

    def last_frames(self) -> dict:
        """Per node, its last Frame (when recorded with one)."""
        with self._lock:
            return {name: h.last_frame for name, h in self._nodes.items() if h.last_frame is not None}

    def nbytes(self) -> int:
        """The bytes the arrays hold (their Python object headers aside)."""
        with self._lock:
            return sum(h.nbytes() for h in self._nodes.values())
