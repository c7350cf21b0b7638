"""A stand-in for the libgpiod v2 Python module (``gpiod``), at the calls a driver makes.

Pass a ``FakeGpiod`` where code takes the ``gpiod`` module. Its GPIO chips have lines with
physical levels: hardware models drive input lines (``FakeGpioChip.drive``) and watch output
lines (``FakeGpioChip.watch``). A request with edge detection queues an edge event whenever its
line changes the way it asked for, and ``wait_edge_events`` blocks on a Condition until one is
queued or the timeout passes, as the kernel's request file descriptor does; the request's
``fd`` is readable exactly while events are queued, for ``select``. What a real system
refuses can be set per chip: a missing device node, no permission, a line another consumer
holds, edge detection refused.

Names, signatures and enum members follow libgpiod 2.x (``gpiod.request_lines(path, config,
consumer=...)``, ``gpiod.LineSettings``, ``gpiod.line.Direction/Edge/Value``, ``EdgeEvent.Type``).
"""

import enum
import errno
import os
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace
from typing import Callable, Dict, List, Optional

SAFETY_WAIT = 10.0   # s a blocking read may wait before the fake calls it a test bug


class Direction(enum.Enum):
    AS_IS = 1
    INPUT = 2
    OUTPUT = 3


class Edge(enum.Enum):
    NONE = 1
    RISING = 2
    FALLING = 3
    BOTH = 4


class Bias(enum.Enum):
    AS_IS = 1
    UNKNOWN = 2
    DISABLED = 3
    PULL_UP = 4
    PULL_DOWN = 5


class Drive(enum.Enum):
    PUSH_PULL = 1
    OPEN_DRAIN = 2
    OPEN_SOURCE = 3


class Clock(enum.Enum):
    MONOTONIC = 1
    REALTIME = 2
    HTE = 3


class Value(enum.Enum):
    INACTIVE = 0
    ACTIVE = 1


@dataclass
class LineSettings:
    direction: Direction = Direction.AS_IS
    edge_detection: Edge = Edge.NONE
    bias: Bias = Bias.AS_IS
    drive: Drive = Drive.PUSH_PULL
    active_low: bool = False
    debounce_period: timedelta = timedelta()
    event_clock: Clock = Clock.MONOTONIC
    output_value: Value = Value.INACTIVE


class EdgeEvent:
    class Type(enum.Enum):
        RISING_EDGE = 1
        FALLING_EDGE = 2

    def __init__(self, event_type, timestamp_ns: int, line_offset: int, global_seqno: int,
                 line_seqno: int):
        self.event_type = event_type
        self.timestamp_ns = timestamp_ns
        self.line_offset = line_offset
        self.global_seqno = global_seqno
        self.line_seqno = line_seqno


class RequestReleasedError(Exception):
    pass


@dataclass(frozen=True)
class ChipInfo:
    name: str
    label: str
    num_lines: int


class FakeGpioChip:
    """One ``/dev/gpiochipN``: line levels (True = high), their owners, and what it refuses."""

    def __init__(self, gpiod: "FakeGpiod", path: str, label: str, num_lines: int):
        self.gpiod = gpiod
        self.path = path
        self.label = label
        self.num_lines = num_lines
        self.levels: Dict[int, bool] = {}
        self.owners: Dict[int, "FakeLineRequest"] = {}
        self.refuse_requests: Optional[OSError] = None   # every request fails so (e.g. EACCES)
        self.refuse_edges: Optional[OSError] = None      # requests with edge detection fail so
        self.held_by_kernel: set = set()                 # lines a driver holds: EBUSY
        self._watchers: Dict[int, List[Callable[[bool], None]]] = {}

    def level(self, offset: int) -> bool:
        with self.gpiod.cond:
            return self.levels.get(offset, False)

    def watch(self, offset: int, callback: Callable[[bool], None]) -> None:
        """Call ``callback(level)`` whenever a program changes output line ``offset``."""
        self._watchers.setdefault(offset, []).append(callback)

    def drive(self, offset: int, level: bool, timestamp_ns: Optional[int] = None) -> None:
        """Outside hardware sets input line ``offset`` to ``level``: edges are queued, stamped
        ``timestamp_ns`` (CLOCK_MONOTONIC) if given, else now (a model may replay a pulse train
        whose timing it chose, as the kernel stamps each edge when it happens)."""
        with self.gpiod.cond:
            self._set_level(offset, level, timestamp_ns)

    def _set_level(self, offset: int, level: bool, timestamp_ns: Optional[int] = None) -> None:
        old = self.levels.get(offset, False)
        self.levels[offset] = level
        owner = self.owners.get(offset)
        if owner is not None and old != level:
            owner._edge(offset, level, timestamp_ns)

    def _notify(self, offset: int, level: bool) -> None:
        for callback in self._watchers.get(offset, ()):
            callback(level)


class FakeLineRequest:
    """What ``request_lines`` returns: ``set_value``/``get_value``, edge events, ``release``."""

    def __init__(self, chip: FakeGpioChip, settings: Dict[int, LineSettings], consumer: Optional[str]):
        self.chip = chip
        self.settings = settings
        self.consumer = consumer
        self.events: List[EdgeEvent] = []
        self.released = False
        self._seqno = 0
        self._fd_pair: Optional[tuple] = None   # readable while events are queued, as the kernel's

    @property
    def fd(self) -> int:
        """A file descriptor that is readable while edge events are queued (select/poll on it)."""
        with self.chip.gpiod.cond:
            self._check()
            if self._fd_pair is None:
                self._fd_pair = os.pipe()
                if self.events:
                    os.write(self._fd_pair[1], b"e")
            return self._fd_pair[0]

    def _signal_fd(self) -> None:
        """Keep ``fd`` readable exactly while events are queued (called with the lock held)."""
        if self._fd_pair is None:
            return
        os.set_blocking(self._fd_pair[0], False)
        try:
            os.read(self._fd_pair[0], 4096)
        except BlockingIOError:
            pass
        if self.events:
            os.write(self._fd_pair[1], b"e")

    @property
    def offsets(self) -> List[int]:
        return list(self.settings)

    def __enter__(self) -> "FakeLineRequest":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _check(self, offset: Optional[int] = None) -> None:
        if self.released:
            raise RequestReleasedError()
        if offset is not None and offset not in self.settings:
            raise ValueError(f"line {offset} is not in this request")

    def _physical(self, offset: int, value: Value) -> bool:
        return (value == Value.ACTIVE) != self.settings[offset].active_low

    def set_value(self, line: int, value: Value) -> None:
        cond = self.chip.gpiod.cond
        with cond:
            self._check(line)
            if self.settings[line].direction != Direction.OUTPUT:
                raise OSError(errno.EPERM, "Operation not permitted")
            level = self._physical(line, value)
            self.chip.levels[line] = level
        self.chip._notify(line, level)   # outside the lock: a model's callback takes its own

    def get_value(self, line: int) -> Value:
        with self.chip.gpiod.cond:
            self._check(line)
            level = self.chip.levels.get(line, False)
            return Value.ACTIVE if level != self.settings[line].active_low else Value.INACTIVE

    def _edge(self, offset: int, level: bool, timestamp_ns: Optional[int] = None) -> None:
        settings = self.settings[offset]
        rising = level != settings.active_low    # edges are logical, as the kernel reports them
        wanted = {Edge.RISING: rising, Edge.FALLING: not rising, Edge.BOTH: True}.get(settings.edge_detection)
        if not wanted:
            return
        self._seqno += 1
        kind = EdgeEvent.Type.RISING_EDGE if rising else EdgeEvent.Type.FALLING_EDGE
        stamp = time.monotonic_ns() if timestamp_ns is None else timestamp_ns
        self.events.append(EdgeEvent(kind, stamp, offset, self._seqno, self._seqno))
        self._signal_fd()
        self.chip.gpiod.cond.notify_all()

    def wait_edge_events(self, timeout=None) -> bool:
        if isinstance(timeout, timedelta):
            timeout = timeout.total_seconds()
        cond = self.chip.gpiod.cond
        gpiod = self.chip.gpiod
        with cond:
            self._check()
            gpiod.waiting += 1
            cond.notify_all()
            try:
                cond.wait_for(lambda: self.events or self.released, timeout)
            finally:
                gpiod.waiting -= 1
            self._check()
            return bool(self.events)

    def read_edge_events(self, max_events: Optional[int] = None) -> List[EdgeEvent]:
        cond = self.chip.gpiod.cond
        with cond:
            self._check()
            if not cond.wait_for(lambda: self.events or self.released, SAFETY_WAIT):
                raise AssertionError("read_edge_events would block for ever: no event is pending")
            self._check()
            count = len(self.events) if max_events is None else max_events
            taken, self.events = self.events[:count], self.events[count:]
            self._signal_fd()
            return taken

    def release(self) -> None:
        with self.chip.gpiod.cond:
            if self.released:
                raise RequestReleasedError()
            self.released = True
            if self._fd_pair is not None:
                for fd in self._fd_pair:
                    os.close(fd)
                self._fd_pair = None
            for offset in self.settings:
                if self.chip.owners.get(offset) is self:
                    del self.chip.owners[offset]
            self.chip.gpiod.cond.notify_all()


class _ChipHandle:
    def __init__(self, chip: FakeGpioChip):
        self._chip = chip

    def get_info(self) -> ChipInfo:
        return ChipInfo(self._chip.path.rsplit("/", 1)[-1], self._chip.label, self._chip.num_lines)

    def close(self) -> None:
        pass

    def __enter__(self) -> "_ChipHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FakeGpiod:
    """The ``gpiod`` module's calls, over fake chips added with ``add_chip``."""

    line = SimpleNamespace(Direction=Direction, Edge=Edge, Bias=Bias, Drive=Drive, Clock=Clock, Value=Value)
    LineSettings = LineSettings
    EdgeEvent = EdgeEvent
    ChipInfo = ChipInfo
    RequestReleasedError = RequestReleasedError
    api_version = "2.x (fake)"

    def __init__(self):
        self.cond = threading.Condition()
        self.chips: Dict[str, FakeGpioChip] = {}
        self.requests: List[FakeLineRequest] = []
        self.waiting = 0   # threads blocked in wait_edge_events

    def add_chip(self, path: str = "/dev/gpiochip0", label: str = "pinctrl-bcm2711",
                 num_lines: int = 58) -> FakeGpioChip:
        chip = FakeGpioChip(self, path, label, num_lines)
        self.chips[path] = chip
        return chip

    def _chip(self, path: str) -> FakeGpioChip:
        if path not in self.chips:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        return self.chips[path]

    def Chip(self, path: str) -> _ChipHandle:   # noqa: N802 - the module's class name
        return _ChipHandle(self._chip(path))

    def is_gpiochip_device(self, path: str) -> bool:
        return path in self.chips

    def request_lines(self, path: str, config: dict, consumer: Optional[str] = None,
                      event_buffer_size: Optional[int] = None, output_values: Optional[dict] = None):
        chip = self._chip(path)
        settings: Dict[int, LineSettings] = {}
        for key, value in config.items():
            for offset in (key if isinstance(key, tuple) else (key,)):
                if not isinstance(offset, int):
                    raise TypeError(f"lines are given by offset here, not {offset!r}")
                settings[offset] = value if value is not None else LineSettings()
        notify = []
        with self.cond:
            if chip.refuse_requests is not None:
                raise chip.refuse_requests
            for offset, line in settings.items():
                if not 0 <= offset < chip.num_lines:
                    raise OSError(errno.EINVAL, "Invalid argument")
                if offset in chip.owners or offset in chip.held_by_kernel:
                    raise OSError(errno.EBUSY, "Device or resource busy")
                if line.edge_detection != Edge.NONE and chip.refuse_edges is not None:
                    raise chip.refuse_edges
            request = FakeLineRequest(chip, settings, consumer)
            for offset, line in settings.items():
                chip.owners[offset] = request
                if line.direction == Direction.OUTPUT:
                    value = (output_values or {}).get(offset, line.output_value)
                    chip.levels[offset] = request._physical(offset, value)
                    notify.append((offset, chip.levels[offset]))
            self.requests.append(request)
        for offset, level in notify:
            chip._notify(offset, level)
        return request
