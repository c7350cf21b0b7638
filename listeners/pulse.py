"""Pulse counting on a GPIO line: gas, water and electricity meters' pulse outputs.

A pulse is the line becoming active and holding for ``debounce_ms`` milliseconds (the level is
debounced on both edges, so a bouncing reed switch counts once). The running total is an
energy (or volume) reading: it survives restarts, kill -9 and power cuts
(``listeners.pulse_total`` says how, and what that writes to the SD card) and is reported as
``<node> <input>=<total>`` whenever it changed, at most once every ``rate_limit`` seconds, and
once at start. The total is kept under the listener's name (``pulse/<name>.total`` in the
gateway's ``runtime_dir`` and ``state_dir``): a renamed section starts from ``initial_total``;
to reset a total, stop the gateway and delete both files.

Settings (``[[name]]`` with ``type = pulse``), defaults in brackets:

* ``pin`` (required): the GPIO, a BCM number (GPIO17 = 17), or a header pin with
  ``pin_numbering = board`` (emonhub's ``pulse_pin``);
* ``pin_numbering`` [bcm]: ``bcm`` or ``board``;
* ``chip`` [auto]: the GPIO chip device; ``auto`` finds the Pi's header chip by its label;
* ``bias`` [pull_down]: the line's internal resistor: ``pull_up``, ``pull_down`` (as emonhub),
  ``disabled``, ``as_is``;
* ``active_low`` [False]: True when a pulse pulls the line low (an open-collector output with
  ``bias = pull_up``);
* ``debounce_ms`` [10]: milliseconds a level must hold to count (S0 pulses last 30 ms or more);
* ``nodename`` [pulse] and ``input`` [pulse]: the node and input name of the total;
* ``rate_limit`` [2]: seconds between two reports at least (emonhub's ``rate_limit``);
* ``save_interval`` [60]: seconds between saves of the total to the SD card at most while
  pulses come; 0 saves every pulse;
* ``initial_total`` [0]: the total to start from when none is saved yet (e.g. the meter's
  reading in pulses); ignored once a total is saved;
* ``nodelistonly`` [False], as every listener.
"""

import os
import time
from typing import Dict, List, Optional

from gateway.frame import Frame, FrameError, input_name_problem, parse_node
from gateway.spool.folders import runtime_dir, state_dir
from listeners.gpio_lines import EdgeListener
from listeners.pulse_total import PulseTotal
from protocols.gpio_pins import bcm_pin, pin_problems


class PulseListener(EdgeListener):
    SETTLE_EARLY = False    # a pulse counts at its end: two wake-ups per pulse, not four
    SPEC = """
    pin = string()
    nodename = string(default='pulse')
    input = string(default='pulse')
    rate_limit = float(min=0, max=3600, default=2)
    save_interval = float(min=0, max=3600, default=60)
    initial_total = integer(min=0, max=9007199254740992, default=0)
    """
    SAMPLE = """
    # Pulse counting on a GPIO (gas, water, electricity meters' pulse outputs): reports the
    # running total, kept through restarts and power cuts.
    [[...]]
    # The pulse output's GPIO (see pin_numbering above).
    pin = 17
    nodename
    input
    # Seconds between two reports of the total at least.
    rate_limit
    # Seconds between saves of the total to the SD card at most while pulses come
    # (a power cut loses at most these seconds of pulses; kill -9 loses none);
    # 0: every pulse.
    save_interval
    # The total to start from while none is saved (the meter's reading in pulses, say).
    initial_total
    """

    def __init__(self, name, settings, loop, emit, nodes=None, gpiod=None):
        super().__init__(name, settings, loop, emit, nodes, gpiod)
        self.pin = bcm_pin(self.settings["pin"], self.settings["pin_numbering"])
        self.node = parse_node(self.settings["nodename"])
        self.total: Optional[PulseTotal] = None
        self._reported: Optional[int] = None
        self._last_report = float("-inf")
        self.pulses = 0                          # counted since the listener opened
        self.last_pulse: Optional[float] = None  # unix time
        self.latency_ms: Optional[float] = None  # edge to report, of the last pulse reported at once

    @classmethod
    def check_settings(cls, settings: dict) -> List[str]:
        problems = pin_problems([settings["pin"]], settings["pin_numbering"], settings["chip"], "pin")
        try:
            parse_node(str(settings["nodename"]))
        except FrameError as exc:
            problems.append(f"nodename: {exc}")
        if input_name_problem(settings["input"]):
            problems.append(f"input: {input_name_problem(settings['input'])}")
        return problems

    def pins(self) -> List[int]:
        return [self.pin]

    def open(self) -> None:
        runtime, state = self.gateway_dirs
        file_name = f"{self.name}.total"
        self.total = PulseTotal(os.path.join(runtime_dir(runtime), "pulse", file_name),
                                os.path.join(state_dir(state), "pulse", file_name), self.settings["save_interval"])
        try:
            self.total.load(self.settings["initial_total"])
        except OSError as exc:
            raise OSError(f"{self}: cannot read the saved pulse total ({exc.strerror or exc}); not counting "
                          "rather than starting from 0") from None
        self.log.info("%s: pulse total %d (from %s)", self, self.total.total, self.total.restored_from)
        super().open()

    # -- the worker thread --------------------------------------------------------------
    def started(self, levels: Dict[int, bool]) -> None:
        self._report(time.monotonic())

    def changed(self, pin: int, active: bool, now: float) -> None:
        if not active:
            return
        self.total.add(1)
        self.pulses += 1
        self.last_pulse = time.time()
        if now - self._last_report >= self.settings["rate_limit"]:
            self._report(now)
            self.latency_ms = self.since_edge_ms(pin)

    def deadline(self) -> Optional[float]:
        deadlines = []
        if self._reported != self.total.total:
            deadlines.append(self._last_report + self.settings["rate_limit"])
        save_in = self.total.save_due_in()
        if save_in is not None:
            deadlines.append(time.monotonic() + save_in)
        return min(deadlines) if deadlines else None

    def due(self, now: float) -> None:
        if self.total.save_due_in() == 0:
            self.total.save()
        if self._reported != self.total.total and now - self._last_report >= self.settings["rate_limit"]:
            self._report(now)

    def stopped(self) -> None:
        self.total.save()
        self.log.info("%s: pulse total %d saved", self, self.total.total)

    def close(self) -> None:
        super().close()
        if self.total is not None:
            self.total.close()

    def _report(self, now: float) -> None:
        self._reported = self.total.total
        self._last_report = now
        self.send(Frame(self.node, (self.total.total,), time.time(), (self.settings["input"],), None, self.name))

    def status_details(self) -> dict:
        """/status for the line: the total, pulses, bounces, lost edges, saves, the last pulse."""
        line, total = self.lines.get(self.pin), self.total
        errors = (line.lost if line else 0) + (total.save_errors + total.mirror_errors if total else 0)
        return {"devices": {f"GPIO{self.pin}": dict(
            self.line_status(self.pin, self.pulses, self.last_pulse, self.latency_ms, errors),
            total=total.total if total else None, pulses=self.pulses,
            saves=total.saves if total else 0, save_errors=total.save_errors if total else 0)}}
