"""Digital inputs on GPIO lines: a heat pump's defrost or DHW relay, a door contact, an alarm.

Every listed line's debounced level is reported as 1 (active) or 0, all lines in one frame:
at once when one of them changes (the edge event wakes the listener; nothing is sampled), and
every ``interval`` seconds whatever happens, so a graph has a point even when nothing moves.

Settings (``[[name]]`` with ``type = gpio``), defaults in brackets:

* ``pins`` (required): the GPIOs, BCM numbers (``17, 27``), or header pins with
  ``pin_numbering = board`` (emonhub's ``pins``; a trailing comma makes one pin a list);
* ``names`` [pin<N>]: the inputs' names, by position (emonhub names them ``pin<N>`` after the
  pin as written);
* ``invert`` [False]: report 1 for a low line (emonhub's ``invert``); the same as
  ``active_low``;
* ``nodename`` [gpio]: the node of the frame (as in emonhub);
* ``interval`` [10]: seconds between reports when nothing changes (emonhub's ``read_interval``);
  0: only changes;
* ``pin_numbering``, ``chip``, ``bias``, ``active_low``, ``debounce_ms``: as for ``type = pulse``
  (``listeners.pulse``): bcm, auto, pull_down, False, 10 ms;
* ``nodelistonly`` [False], as every listener.
"""

import time
from typing import Dict, List, Optional

from gateway.frame import Frame, FrameError, input_name_problem, parse_node
from listeners.gpio_lines import EdgeListener
from protocols.gpio_pins import bcm_pin, pin_problems


class GpioListener(EdgeListener):
    SPEC = """
    pins = force_list()
    names = force_list(default=list())
    invert = boolean(default=False)
    nodename = string(default='gpio')
    interval = float(min=0, max=86400, default=10)
    """
    SAMPLE = """
    # Digital inputs on GPIOs (a heat pump's DHW or defrost relay): 1 or 0 each, reported at
    # once on a change and every 'interval' s.
    [[...]]
    # The GPIOs (see pin_numbering above); the emonHP's header pin 15 is GPIO22.
    pins = 22,
    # Input names by position (default pin<N>, N as written in pins).
    names
    # True: a low line reads 1 (the same as active_low).
    invert
    nodename
    # Seconds between reports when nothing changes (0: changes only).
    interval
    """

    def __init__(self, name, settings, loop, emit, nodes=None, gpiod=None):
        if settings.get("invert"):
            settings = dict(settings, active_low=not settings.get("active_low", False))
        super().__init__(name, settings, loop, emit, nodes, gpiod)
        numbering = self.settings["pin_numbering"]
        self.pin_list = [bcm_pin(pin, numbering) for pin in self.settings["pins"]]
        written = [str(pin).strip() for pin in self.settings["pins"]]
        names = list(self.settings["names"])
        self.input_names = tuple(names[i] if i < len(names) else f"pin{written[i]}" for i in range(len(written)))
        self.node = parse_node(self.settings["nodename"])
        self.levels: Dict[int, bool] = {}
        self.reports = 0
        self.last_report: Optional[float] = None   # unix time
        self.latency_ms: Optional[float] = None    # edge to report, of the last change
        self._next_report = float("inf")

    @classmethod
    def check_settings(cls, settings: dict) -> List[str]:
        pins = settings.get("pins") or []
        if not pins:
            return ["pins: no pin given (e.g. pins = 17, 27)"]
        problems = pin_problems(pins, settings["pin_numbering"], settings["chip"], "pins")
        names = settings.get("names") or []
        if len(names) > len(pins):
            problems.append(f"names: {len(names)} names for {len(pins)} pins")
        for name in names:
            if input_name_problem(name):
                problems.append(f"names: {input_name_problem(name)}")
        try:
            parse_node(str(settings["nodename"]))
        except FrameError as exc:
            problems.append(f"nodename: {exc}")
        return problems

    def pins(self) -> List[int]:
        return self.pin_list

    # -- the worker thread --------------------------------------------------------------
    def started(self, levels: Dict[int, bool]) -> None:
        self.levels = dict(levels)
        self._report(time.monotonic())

    def changed(self, pin: int, active: bool, now: float) -> None:
        self.levels[pin] = active
        self._report(now)
        self.latency_ms = self.since_edge_ms(pin)

    def deadline(self) -> Optional[float]:
        return None if self._next_report == float("inf") else self._next_report

    def due(self, now: float) -> None:
        self._report(now)

    def _report(self, now: float) -> None:
        interval = self.settings["interval"]
        self._next_report = now + interval if interval > 0 else float("inf")
        values = tuple(int(self.levels[pin]) for pin in self.pin_list)
        self.reports += 1
        self.last_report = time.time()
        self.send(Frame(self.node, values, self.last_report, self.input_names, None, self.name))

    def status_details(self) -> dict:
        """/status per line: its input, level and changes, bounces, lost edges, the last report."""
        return {"devices": {f"GPIO{pin}": dict(
            self.line_status(pin, self.reports, self.last_report, self.latency_ms,
                             self.lines[pin].lost if pin in self.lines else 0),
            input=name, level=int(self.levels[pin]) if pin in self.levels else None,
            changes=self.lines[pin].changes if pin in self.lines else 0)
            for pin, name in zip(self.pin_list, self.input_names)}}
