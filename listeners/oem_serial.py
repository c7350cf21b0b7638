"""OEM serial listener: an emonTx4/5/6 or emonPi2/3 running OpenEnergyMonitor's current firmware.

Reads what the ``serial`` listener reads with ``format = oem`` (key:value and JSON lines, at
115200 baud; radio packets a board relays as ``OK`` lines) and, when the config gives the board
settings (radio, calibration, period...), brings the board to them in its own command syntax:
it lists its settings, each differing one is sent alone and its answer awaited before the next
(the AVR boards read a few characters per pass of their main loop), the board lists them again,
and they are saved to its EEPROM only when a stored setting changed. What the board answered
is logged, setting by setting, and shown in /status. The conversation runs again whenever the
port opens (start, replug) or the board restarts, and when a board setting changes in the config.

The protocol (lines, commands, the four firmware families) is ``protocols.oem_firmware``; this
file only drives it on the loop: commands through the serial layer's paced queue, a loop timer
for each answer awaited.
"""

import logging
import time
from typing import Dict, List, Optional

from protocols import oem_firmware
from protocols.oem_firmware import Calibration, Configurator, Data, Ignored, Report, Step
from listeners.serial import SerialListener
from listeners.serialport import OPEN_SETTLE

COMMAND_GAP = 0.1    # s of silence after each command before the next may be written
BOARD_SETTINGS = ("radio", "frequency", "group", "nodeid", "rfpower", "period", "acfreq", "assumedvrms",
                  "vcal", "vcal2", "vcal3") + tuple(f"ical{n}" for n in range(1, 13)) + \
    ("pulse", "pulse_period", "temperature", "json")


class OemSerialListener(SerialListener):
    """Type ``oemserial``: the serial listener's keys (com_port, com_baud = 115200, format = oem,
    nodename, idle_timeout, max_line) plus the board's settings. Each is left out by default: the board
    keeps its own. Given, it is sent when the board has another value:

    radio = on/off                 the board's radio (w); the emonPi2's radio is the Pi's
    frequency = 433, 433.92, 868, 915 (or 4, 49, 8, 9)   radio band (b; emon32: x)
    group = 0-255                  radio network group (g)
    nodeid = 1-60                  the board's radio node id (n; value-first firmware: i)
    rfpower = 0-31                 radio power (p; 25 = +7 dBm)
    period = 0.1-3600              seconds between readings (d)
    acfreq = 50 or 60              line frequency (f; avrdb keeps it in RAM: sent at every start)
    assumedvrms = 1-1000           Vrms assumed without an AC adapter (a)
    vcal = cal[, phase]            voltage calibration (k0; emon32 k1); vcal2, vcal3: emon32's
    ical1 ... ical12 = cal[, lead] CT calibration and phase lead (k1...; emon32 k4...); without
                                   a lead the board's is kept
    pulse = on/off, pulse_period = ms   pulse input 1 (m1)
    temperature = on/off           temperature sensing (t)
    json = on/off                  JSON output (j)
    """

    SPEC = """
    com_port = string(default='/dev/ttyUSB0')
    com_baud = integer(min=50, max=4000000, default=115200)
    format = option('auto', 'nodeid_values', 'keyvalue', 'json', 'oem', default='oem')
    radio = boolean(default=None)
    frequency = string(default=None)
    group = integer(min=0, max=255, default=None)
    nodeid = integer(min=1, max=60, default=None)
    rfpower = integer(min=0, max=31, default=None)
    period = float(min=0.1, max=3600, default=None)
    acfreq = integer(min=50, max=60, default=None)
    assumedvrms = float(min=1, max=1000, default=None)
    vcal = force_list(default=None)
    vcal2 = force_list(default=None)
    vcal3 = force_list(default=None)
    ical1 = force_list(default=None)
    ical2 = force_list(default=None)
    ical3 = force_list(default=None)
    ical4 = force_list(default=None)
    ical5 = force_list(default=None)
    ical6 = force_list(default=None)
    ical7 = force_list(default=None)
    ical8 = force_list(default=None)
    ical9 = force_list(default=None)
    ical10 = force_list(default=None)
    ical11 = force_list(default=None)
    ical12 = force_list(default=None)
    pulse = boolean(default=None)
    pulse_period = integer(min=0, max=65535, default=None)
    temperature = boolean(default=None)
    json = boolean(default=None)
    """
    SAMPLE = """
    # An emonTx4/5/6 or emonPi2/3 on a serial port (OEM's current firmware, 115200 baud): reads
    # its lines as type = serial does (format, nodename as there; emonhub's OEM interfacer runs
    # as this type), and gives
    # the board the settings below in its own commands. Each left out: the board keeps its
    # own. Set: sent only when the board lists another value (at start, after a replug or a
    # restart of the board, when changed here), one command at a time after each answer, and
    # saved to its EEPROM only when a stored setting changed. The answers are logged and shown
    # in /status. Needs no extra package.
    [[...]]
    com_port = /dev/ttyACM0
    com_baud
    nodename = emonTx4
    # oem: key:value and JSON lines, and the radio packets a board relays (OK 17 ...)
    format
    # radio = on                 the board's radio (emonPi2: the Pi's radio, not the board's)
    # frequency = 433.92         433, 433.92, 868, 915 (MHz; or 4, 49, 8, 9)
    # group = 210                radio network group, 0-255
    # nodeid = 17                the board's radio node id, 1-60
    # rfpower = 25               radio power 0-31 (25 = +7 dBm)
    # period = 9.8               seconds between readings
    # acfreq = 50                line frequency, 50 or 60 Hz
    # assumedvrms = 240          Vrms assumed without an AC adapter
    # vcal = 101.3               voltage calibration[, phase]; vcal2, vcal3 on emonTx6/emonPi3
    # ical1 = 100, 3.2           CT calibration[, phase lead], ical1 ... ical12
    # ical2 = 50, 3.2            (and so on: ical3, ical4, ical5, ical6, ical7, ical8, ical9,
    #                            ical10, ical11, ical12)
    # pulse = on                 pulse input 1, and its minimum period in ms
    # pulse_period = 100
    # temperature = on           temperature sensing
    # json = off                 JSON output
    idle_timeout
    max_line
    """
    LIVE_SETTINGS = SerialListener.LIVE_SETTINGS | frozenset(BOARD_SETTINGS)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.configurator: Optional[Configurator] = None
        self.board_state = "not asked"       # for the status: asking, done, problems, ...
        self.board_summary: List[str] = []   # the last conversation's report
        self.board_problems = 0
        self.board_error: Optional[str] = None
        self._answer_timer = None
        self._again = False                  # settings changed while a conversation runs
        self._after_boot = False             # the board restarted: converse after its first reading

    @classmethod
    def wanted(cls, settings: dict):
        """``(settings for oem_firmware, problems naming the key)``."""
        return oem_firmware.wanted_settings({k: settings.get(k) for k in BOARD_SETTINGS})

    @classmethod
    def check_settings(cls, settings: dict) -> List[str]:
        return super().check_settings(settings) + cls.wanted(settings)[1]

    # -- the port -----------------------------------------------------------------------
    def port_opened(self) -> None:
        """Ask the board once the port has settled: an answer sooner would be taken for the tail
        of a line the board was printing when the port opened, and dropped."""
        self._answer_timer = self.loop.call_later(OPEN_SETTLE, self._converse)

    def port_closed(self) -> None:
        self._cancel_answer()
        if self.configurator is not None and not self.configurator.done:
            self.board_state = "interrupted (port closed)"
        self.configurator = None

    def apply_settings(self, changed: set) -> None:
        super().apply_settings(changed)
        if changed & set(BOARD_SETTINGS) and self.port is not None:
            if self.configurator is not None and not self.configurator.done:
                self._again = True
            else:
                self._converse()

    def close(self) -> None:
        self._cancel_answer()
        super().close()

    # -- lines --------------------------------------------------------------------------
    def handle_text(self, text: str) -> None:
        item = oem_firmware.parse_line(text)
        if isinstance(item, Data):
            super().handle_text(text)
            if self._after_boot:     # its start-up messages are over
                self._after_boot = False
                self._converse()
            return
        if isinstance(item, (Ignored, Calibration)):
            return
        if isinstance(item, Report) and item.marker == "boot" and \
                (self.configurator is None or self.configurator.done):
            self.log.info("%s: the board restarted%s", self,
                          ": its settings are checked after its first reading" if self.wanted(self.settings)[0]
                          else "")
            self._after_boot = True
            return
        if self.configurator is not None and not self.configurator.done:
            self._next(self.configurator.feed(item))
        else:
            self.log.debug("%s: board: %s", self, text)

    # -- the conversation ---------------------------------------------------------------
    def _converse(self) -> None:
        self._cancel_answer()
        wanted, _ = self.wanted(self.settings)
        self._again = False
        if not wanted:
            self.configurator, self.board_state = None, "not asked"
            return
        self.configurator = Configurator(wanted)
        self.board_state = "asking"
        self._next(self.configurator.start())

    def _next(self, step: Optional[Step]) -> None:
        """Write the conversation's next command, and await its answer; or finish it."""
        if step is None:
            if self.configurator is not None and self.configurator.done:
                self._finished()
            return
        self._cancel_answer()
        self.log.debug("%s: to the board: %s", self, step.command)
        if not self.send_command(step.command.encode("ascii") + b"\n", COMMAND_GAP):
            return           # the port closed: port_opened() starts again
        self._answer_timer = self.loop.call_later(step.wait + COMMAND_GAP, self._timed_out)

    def _timed_out(self) -> None:
        self._answer_timer = None
        if self.configurator is not None:
            self._next(self.configurator.timed_out())

    def _cancel_answer(self) -> None:
        if self._answer_timer is not None:
            self._answer_timer.cancel()
            self._answer_timer = None

    def _finished(self) -> None:
        self._cancel_answer()
        cfg = self.configurator
        self.board_summary = cfg.report()
        problems = cfg.problems
        self.board_problems = len(problems) + (cfg.recognised is False) + (cfg.saved is False)
        self.board_state = "set" if not self.board_problems else "problems"
        self.board_error = (problems[0].describe() if problems else self.board_summary[0]
                            if cfg.recognised is False else self.board_summary[-1] if cfg.saved is False else None)
        trouble = {o.setting for o in problems}
        for line, outcome in zip(self.board_summary[1:], cfg.outcomes.values()):
            level = logging.WARNING if outcome.setting in trouble else logging.INFO
            self.log.log(level, "%s: %s", self, line)
        first, rest = self.board_summary[0], self.board_summary[1 + len(cfg.outcomes):]
        self.log.log(logging.WARNING if cfg.recognised is False else logging.INFO, "%s: %s", self, first)
        for line in rest:
            self.log.log(logging.WARNING if cfg.saved is False else logging.INFO, "%s: %s", self, line)
        if self._again:
            self._converse()

    # -- status -------------------------------------------------------------------------
    def status_details(self) -> dict:
        cfg = self.configurator
        last = self.stats.last_frame_time
        settings: Dict[str, dict] = {}
        if cfg is not None:
            for name, outcome in cfg.outcomes.items():
                settings[name] = {"result": outcome.result, "command": outcome.command,
                                  "answer": " / ".join(outcome.answer) or None, "reason": outcome.reason or None}
        return {"devices": {self.port_name: {
            "state": self.board_state if self.port is not None else "port closed",
            "board": cfg.board.describe() if cfg is not None and cfg.board.dialect else None,
            "errors": self.board_problems,
            "last_error": self.board_error,
            "last_good_read_age_s": None if last is None else round(max(0.0, time.time() - last), 1),
            "settings": settings, "saved": cfg.saved if cfg is not None else None}}}
