"""GPIO inputs through the kernel's GPIO character device (libgpiod 2's ``gpiod`` module).

What the pulse counter (``listeners.pulse``) and the digital inputs (``listeners.gpio``) share:
``EdgeListener``, which requests the lines (pins, chips, the optional ``gpiod`` module and
debouncing are ``protocols.gpio_pins``'s) and waits for their edge events.

Why a worker thread and not the event loop: edge events arrive on a file descriptor, which the
loop could watch like a socket. The pulse counter must also ``fdatasync`` its total to the SD
card, which can take tens or hundreds of milliseconds on a busy card, and that must never run on
the thread that reads every other listener. One thread per GPIO listener, blocked in
``select()`` on the request's descriptor (and a wake-up pipe for stopping) with the next
deadline as timeout, owns the lines, the debouncers and the total: no locks, no CPU while
nothing happens, and a bouncing contact's edges are handled off the loop. Frames go to the loop
with ``call_soon_threadsafe``, as every listener's do.
"""

import os
import selectors
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Dict, List, Optional

from listeners.base import Listener
from protocols.gpio_pins import Debouncer, GpioError, find_header_chip, gpio_hint, import_gpiod


JOIN_TIMEOUT = 5.0               # s: a worker stops within this (it is woken through its pipe)


@dataclass
class LineStatus:
    """What /status shows per GPIO line."""

    edges: int = 0               # edge events the kernel reported
    changes: int = 0             # debounced level changes (the rest of the edges were bounces)
    lost: int = 0                # edges the kernel dropped (its event buffer was full)
    last_change: Optional[float] = None   # unix time


class EdgeListener(Listener):
    """Listeners of GPIO input lines: requests them with both edges detected and runs a worker
    thread that waits for edge events and deadlines (see the module docstring for why).

    A subclass gives ``pins()`` and implements the worker's hooks: ``started(levels)``,
    ``changed(pin, active, now)``, ``deadline()`` and ``due(now)``, and ``stopped()``; it hands
    frames to ``send(frame)``, which passes them to the loop thread.
    """

    SPEC = """
    chip = string(default='auto')
    pin_numbering = option('bcm', 'board', default='bcm')
    bias = option('pull_up', 'pull_down', 'disabled', 'as_is', default='pull_down')
    active_low = boolean(default=False)
    debounce_ms = float(min=0, max=10000, default=10)
    """
    SAMPLE_COMMON = """
    # Settings every GPIO listener (pulse, gpio) has. They need the gpiod package (libgpiod 2):
    # pip install 'oemgateway[gpio]'. Edges raise events (nothing is sampled), debounced.
    #   pin_numbering = bcm  bcm: pins are BCM GPIO numbers (GPIO17 is 17); board: the
    #                        header's pin numbers, as emonhub writes them
    #   chip = auto          the GPIO chip device; auto finds the Pi's header chip (a Pi 5 too)
    #   bias = pull_down     the line's resistor: pull_up, pull_down, disabled or as_is
    #   active_low = False   True when the active level is low (open collector, bias pull_up)
    #   debounce_ms = 10     milliseconds a level must hold to count (S0 pulses last 30 or more)
    """
    CONSUMER = "oemgateway"
    SETTLE_EARLY = True
    """Wake when a line's level has held the debounce period, to report it without waiting for
    the next edge (digital inputs). False: levels are settled at the next edge only (a pulse
    counts at its end), which halves the thread's wake-ups per pulse."""

    def __init__(self, name, settings, loop, emit, nodes=None, gpiod=None):
        super().__init__(name, settings, loop, emit, nodes)
        self._gpiod = gpiod
        self._request = None
        self._thread: Optional[threading.Thread] = None
        self._wake_r = self._wake_w = -1
        self._stopping = False
        self.state = "closed"
        self.chip_path = ""
        self.lines: Dict[int, LineStatus] = {}
        self._debouncers: Dict[int, Debouncer] = {}
        self._last_seqno: Dict[int, int] = {}
        self._known_ns: Dict[int, int] = {}
        self._rising = None

    # -- to implement -------------------------------------------------------------------
    def pins(self) -> List[int]:
        """The BCM numbers of the lines to watch."""
        raise NotImplementedError

    def started(self, levels: Dict[int, bool]) -> None:
        """Worker thread: the lines are requested; their debounced levels now."""

    def changed(self, pin: int, active: bool, now: float) -> None:
        """Worker thread: ``pin``'s debounced level became ``active``."""

    def deadline(self) -> Optional[float]:
        """Worker thread: when (time.monotonic()) ``due`` must run next, or None."""
        return None

    def due(self, now: float) -> None:
        """Worker thread: a deadline given by ``deadline`` has come."""

    def stopped(self) -> None:
        """Worker thread, last call: the listener is closing."""

    # -- the listener contract ----------------------------------------------------------
    def open(self) -> None:
        gpiod = self._gpiod or import_gpiod()
        chip = self.settings["chip"]
        self.chip_path = find_header_chip(gpiod) if chip == "auto" else chip
        line = gpiod.line
        bias = {"pull_up": line.Bias.PULL_UP, "pull_down": line.Bias.PULL_DOWN,
                "disabled": line.Bias.DISABLED, "as_is": line.Bias.AS_IS}[self.settings["bias"]]
        period = timedelta(milliseconds=self.settings["debounce_ms"])
        config = {pin: gpiod.LineSettings(direction=line.Direction.INPUT, edge_detection=line.Edge.BOTH,
                                          bias=bias, active_low=self.settings["active_low"],
                                          debounce_period=period)
                  for pin in self.pins()}
        names = ", ".join(f"GPIO{pin}" for pin in config)
        try:
            self._request = gpiod.request_lines(self.chip_path, consumer=self.CONSUMER, config=config)
        except OSError as exc:
            raise GpioError(f"{self}: cannot watch {names} on {self.chip_path}: {gpio_hint(exc)}") from None
        self._rising = gpiod.EdgeEvent.Type.RISING_EDGE
        active = line.Value.ACTIVE
        levels = {pin: self._request.get_value(pin) == active for pin in config}
        period_ns = int(self.settings["debounce_ms"] * 1e6)
        self._debouncers = {pin: Debouncer(period_ns, level) for pin, level in levels.items()}
        self.lines = {pin: LineStatus() for pin in config}
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._run, args=(levels,), name=f"gpio-{self.name}", daemon=True)
        self.state = "open"
        self.log.info("%s: watching %s on %s", self, names, self.chip_path)
        self._thread.start()

    def close(self) -> None:
        self._stopping = True
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT)
            if self._thread.is_alive():
                self.log.error("%s: its GPIO thread did not stop within %g s", self, JOIN_TIMEOUT)
            self._thread = None
        if self._request is not None:
            try:
                self._request.release()
            except Exception:   # released already: nothing else to do at close
                pass
            self._request = None
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1
        self.state = "closed"
        super().close()

    def send(self, frame) -> None:
        """Worker thread: hand ``frame`` to the loop thread, which emits it."""
        self.loop.call_soon_threadsafe(lambda: self.emit(frame))

    # -- the worker ---------------------------------------------------------------------
    def _run(self, levels: Dict[int, bool]) -> None:
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self._request.fd, selectors.EVENT_READ)
                selector.register(self._wake_r, selectors.EVENT_READ)
                self.started(levels)
                while not self._stopping:
                    wait = self._next_wait()
                    selector.select(wait)
                    if self._stopping:
                        break
                    if self._request.wait_edge_events(timedelta(0)):
                        self._take_edges(self._request.read_edge_events())
                    self._settle()
                    now = time.monotonic()
                    deadline = self.deadline()
                    if deadline is not None and deadline <= now:
                        self.due(now)
        except Exception:   # a bug must not pass silently: the listener says it stopped
            self.log.exception("%s: the GPIO thread stopped on an internal error", self)
            self.state = "failed"
        finally:
            try:
                self.stopped()
            except Exception:
                self.log.exception("%s: internal error while stopping", self)

    def _next_wait(self) -> Optional[float]:
        candidates = [d.settles_at() for d in self._debouncers.values()] if self.SETTLE_EARLY else []
        now_ns = time.monotonic_ns()
        waits = [(at - now_ns) / 1e9 for at in candidates if at is not None]
        deadline = self.deadline()
        if deadline is not None:
            waits.append(deadline - time.monotonic())
        return max(0.0, min(waits)) if waits else None

    def _take_edges(self, events) -> None:
        for event in events:
            pin = event.line_offset
            status = self.lines.get(pin)
            if status is None:
                continue
            status.edges += 1
            last = self._last_seqno.get(pin)
            if last is not None and event.line_seqno > last + 1:
                status.lost += event.line_seqno - last - 1
            self._last_seqno[pin] = event.line_seqno
            changed = self._debouncers[pin].edge(event.event_type == self._rising, event.timestamp_ns)
            if changed is not None:
                self._changed(pin, changed, event.timestamp_ns)

    def _settle(self) -> None:
        now_ns = time.monotonic_ns()
        for pin, debouncer in self._debouncers.items():
            changed = debouncer.settle(now_ns)
            if changed is not None:
                self._changed(pin, changed, debouncer.stable_since_ns + debouncer.period_ns)

    def _changed(self, pin: int, active: bool, known_ns: int) -> None:
        """``known_ns``: when the change could first be known (the edge that settled it, or
        the end of the debounce period): the start of its latency."""
        status = self.lines[pin]
        status.changes += 1
        status.last_change = time.time()
        self._known_ns[pin] = known_ns
        self.changed(pin, active, time.monotonic())

    def line_status(self, pin: int, good: int, last_good: Optional[float], latency_ms: Optional[float],
                    errors: int) -> dict:
        """The /status fields every device has (as polled devices show them), for one line:
        ``good`` readings (pulses, reports) and ``errors`` make its ``polls``."""
        line = self.lines.get(pin)
        return {"state": "ok" if self.state == "open" else self.state, "polls": good + errors, "errors": errors,
                "last_good_read_age_s": None if last_good is None else round(max(0.0, time.time() - last_good), 1),
                "latency_s": None if latency_ms is None else round(latency_ms / 1000, 4),
                "last_error": f"{line.lost} edges lost (the kernel's event buffer was full)" if line and line.lost
                else None,
                "edges": line.edges if line else 0, "bounces": max(0, line.edges - line.changes) if line else 0}

    def since_edge_ms(self, pin: int) -> Optional[float]:
        """Milliseconds since ``pin``'s last change could first be known (the latency of a report
        made now), or None before the first change."""
        since = self._known_ns.get(pin)
        return None if since is None else round((time.monotonic_ns() - since) / 1e6, 1)
