"""RFM2Pi listener: an RFM12Pi / RFM69Pi / emonPi radio board running RF12demo firmware.

Reads the packets the board receives (both firmware generations, see ``protocols.rf12demo``)
and emits them as RawFrames: the node decoder turns their bytes into values. Keeps the board's
radio settings as configured (``baseid``, ``frequency``, ``group``, ``quiet``): the board is
asked for its settings whenever the port opens (at start, after a replug) and only the ones
that differ are sent, one second apart, so its EEPROM is not rewritten for nothing; a changed
setting in the config is sent at once. Optionally broadcasts the time for emonGLCD displays,
and passes lines from a TCP port (the original repeater) or from ``transmit`` to the radio.
"""

import dataclasses
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from gateway.frame import RawFrame
from gateway.logs import LogThrottle
from protocols import rf12demo
from protocols.rf12demo import BoardReport, Notice, Packet
from listeners.radio_tx import RadioTransmitter
from listeners.repeater import RepeaterServer
from listeners.serialport import SerialPortListener

REPORT_WAIT = 3.0    # s the board has to state its settings after ``v`` before they are all sent
RADIO_SETTINGS = frozenset({"baseid", "frequency", "group", "quiet"})
MHZ = {"4": "433", "8": "868", "9": "915"}   # the original gateway's frequency codes
_WHAT = {"i": "node id", "b": "band", "g": "group", "q": "quiet mode", "x": "output format"}


@dataclass
class RadioStats:
    packets: int = 0
    empty: int = 0          # packets without data (acks, polls): not forwarded
    bad_crc: int = 0        # " ? ..." lines: never forwarded
    notices: int = 0        # echoes, confirmations, banners, help text
    tx_dropped: int = 0     # radio packets not sent: port down or queue full


class RFM2PiListener(SerialPortListener, RadioTransmitter):
    SPEC = """
    com_port = string(default='/dev/ttyAMA0')
    com_baud = integer(min=50, max=4000000, default=38400)
    baseid = integer(min=1, max=30, default=None)
    frequency = option('4', '8', '9', '433', '868', '915', default=None)
    group = integer(min=0, max=250, default=None)
    quiet = boolean(default=None)
    radio_format = option('rf12', 'rf69', default='rf12')
    sendtimeinterval = float(min=0, max=86400, default=0)
    repeater_port = integer(min=0, max=65535, default=0)
    repeater_bind = string(default=None)
    """
    SAMPLE = """
    # An RFM69Pi / emonPi radio board (RF12demo firmware), 38400 baud. Use type = rfm12pi for
    # the original RFM12Pi board (9600 baud), which the original gateway's type names mean.
    # Radio payloads are decoded per [nodes] below (16-bit values for nodes not listed).
    [[...]]
    com_port = /dev/ttyAMA0
    com_baud
    # Radio settings. Left out: the board keeps its own. Set: sent to the board only
    # when it reports something else (at start, after a replug, when changed here).
    # The board's own node id, 1-30.
    baseid = 15
    # 433, 868 or 915 (MHz); the original 4, 8, 9 are accepted too.
    frequency = 433
    # Network group, 0-250 (0: any group). The original name 'sgroup' is accepted too.
    group = 210
    # True: the board does not print packets with a bad CRC.
    quiet = True
    # Header layout: rf12 (node ids 1-31, every OEM board) or rf69 (JeeLib's native
    # RFM69 format, node ids up to 63).
    radio_format
    # Broadcast the time (00,HH,MM,00,s) every this many seconds for emonGLCD; 0: never.
    sendtimeinterval
    # A TCP port whose lines go out on the radio: RF12demo commands (12,34,56,s) or
    # "node v1 v2 ..." (packed per [nodes] [[node]] [[[tx]]]). 0: none. The original
    # name 'port_nb' is accepted too, and then listens on all interfaces as it did.
    repeater_port
    # repeater_bind = 127.0.0.1
    idle_timeout
    """
    RENAMED = {"sgroup": "group", "port_nb": "repeater_port"}
    LIVE_SETTINGS = SerialPortListener.LIVE_SETTINGS | RADIO_SETTINGS | {"sendtimeinterval", "radio_format"}
    BAUD_HINT = " (RFM69Pi and emonPi boards send at 38400, the original RFM12Pi at 9600)"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.radio_stats = RadioStats()
        self.board: Optional[BoardReport] = None      # as the board last reported its settings
        self._logged: Optional[BoardReport] = None    # the settings last logged at INFO
        self.firmware: Optional[str] = None
        self._believed: Dict[str, int] = {}           # its settings: reported, or sent since
        self._awaiting_report = False
        self._letter_first = False
        self.tx_problems = LogThrottle(self.log, schedule=self.loop.call_later)

    @classmethod
    def modernise(cls, settings: dict, renamed) -> dict:
        """The original gateway's frequency codes (4, 8, 9) in MHz; the repeater's address made
        explicit: the original repeater's ``port_nb`` listened on every interface."""
        modern = super().modernise(settings, renamed)
        modern["frequency"] = MHZ.get(modern.get("frequency"), modern.get("frequency"))
        if modern.get("repeater_bind") is None:
            modern["repeater_bind"] = "0.0.0.0" if renamed.get("repeater_port") == "port_nb" else "127.0.0.1"
        return modern

    @classmethod
    def warn_settings(cls, settings: dict) -> List[str]:
        return super().warn_settings(settings) + RepeaterServer.warnings_of(settings)

    @classmethod
    def claims(cls, settings: dict) -> list:
        return super().claims(settings) + RepeaterServer.claims_of(settings)

    # -- the contract -------------------------------------------------------------------
    def open(self) -> None:
        self.open_repeater()
        super().open()

    def close(self) -> None:
        self.close_repeater()
        self._stop_timers()
        super().close()
        self.tx_problems.flush()

    def apply_settings(self, changed: set) -> None:
        super().apply_settings(changed)
        if "sendtimeinterval" in changed:
            self._cancel("time")
            if self.port is not None and self.settings["sendtimeinterval"] > 0:
                self._broadcast_time()
        if changed & RADIO_SETTINGS and self.port is not None and not self._awaiting_report:
            self._reconcile()

    # -- the port -----------------------------------------------------------------------
    def port_opened(self) -> None:
        self.board, self._believed, self._letter_first = None, {}, False
        self._awaiting_report = True
        self.send_command(b"v", rf12demo.QUICK_GAP)
        self._timers["report"] = self.loop.call_later(REPORT_WAIT, self._report_missing)
        if self.settings["sendtimeinterval"] > 0:
            self._broadcast_time()

    def port_closed(self) -> None:
        self._stop_timers()
        self._awaiting_report = False

    def _stop_timers(self) -> None:
        for name in ("report", "time"):
            self._cancel(name)

    # -- lines from the board -----------------------------------------------------------
    def handle_text(self, text: str) -> None:
        item = rf12demo.parse_line(text, rf12demo.HEADER_MASKS[self.settings["radio_format"]])
        if isinstance(item, Packet):
            self._packet(item)
        elif isinstance(item, BoardReport):
            self._reported(item)
        elif isinstance(item, Notice):
            self._notice(item)
        else:
            self.reject(item.reason, text)

    def _packet(self, packet: Packet) -> None:
        self.radio_stats.packets += 1
        if not packet.payload:
            self.radio_stats.empty += 1
            self.log.debug("%s: node %d sent a packet without data", self, packet.node)
            return
        self.emit(RawFrame(packet.node, packet.payload, time.time(), packet.rssi, self.name))

    def _notice(self, notice: Notice) -> None:
        if notice.kind == "bad crc":
            self.radio_stats.bad_crc += 1
        else:
            self.radio_stats.notices += 1
        if notice.kind == "banner":
            self.firmware = notice.text.strip("[]|")
            self._letter_first = "emonBase" in notice.text
        self.log.debug("%s: board: %s", self, notice.text)

    def _reported(self, report: BoardReport) -> None:
        self.radio_stats.notices += 1
        if report.firmware:
            self.firmware = report.firmware
        self.board = report
        self._believed = report.command_values()
        settings = dataclasses.replace(report, firmware=None)
        (self.log.info if settings != self._logged else self.log.debug)("%s: board %s", self, report.describe())
        self._logged = settings
        if self._awaiting_report:
            self._awaiting_report = False
            self._cancel("report")
            self._reconcile()

    def _report_missing(self) -> None:
        self._timers.pop("report", None)
        self._awaiting_report = False
        if self._wanted():
            self.log.info("%s: the board did not state its settings (firmware older than "
                          "RF12demo.11?): sending the configured ones", self)
        self._reconcile()

    # -- radio settings -----------------------------------------------------------------
    def _wanted(self) -> Dict[str, int]:
        """The configured radio settings as command values: ``{"i": 15, "b": 4, "g": 210}``."""
        settings = self.settings
        wanted = {"i": settings["baseid"],
                  "b": rf12demo.band_of(settings["frequency"]) if settings["frequency"] else None,
                  "g": settings["group"], "q": None if settings["quiet"] is None else int(settings["quiet"])}
        if self.board is not None and self.board.hex_mode:
            wanted["x"] = 0    # packets in hex would not be understood
        return {letter: value for letter, value in wanted.items() if value is not None}

    def _reconcile(self) -> None:
        """Send each configured setting the board does not have yet, one second apart."""
        wanted = {k: v for k, v in self._wanted().items() if self._believed.get(k) != v}
        if wanted and self._letter_first:
            self.log.warning("%s: firmware %s takes another command syntax: radio settings are not "
                             "sent; set them on the board", self, self.firmware)
            return
        for letter, value in wanted.items():
            command = f"{value}{letter}"
            self.log.info("%s: setting the board's %s to %s (%s)", self, _WHAT[letter], value, command)
            if self.send_command(command.encode(), rf12demo.CONFIG_GAP):
                self._believed[letter] = value

    # -- transmitting -------------------------------------------------------------------
    def transmit(self, payload: Sequence[int], dest: int = 0) -> bool:
        """Queue a radio packet: ``payload`` bytes (1-66, each 0-255) to node ``dest`` (0: all).

        Written as ``12,34,s`` (or ``12,34,10s``), paced behind other commands. Returns False,
        logged, when it cannot be sent (port closed, queue full); raises ValueError for bytes or
        a destination the radio cannot carry. Call it on the loop thread (from another thread,
        through ``loop.call_soon_threadsafe``).
        """
        command = rf12demo.send_command(payload, dest)
        if self.send_command(command.encode(), rf12demo.SEND_GAP):
            return True
        self.radio_stats.tx_dropped += 1
        self.tx_problems("%s: radio packet %s not sent: %s", self, command,
                         "the port is closed" if self.port is None else "too many commands queued")
        return False

    def repeat(self, line: str) -> None:
        """A line from the repeater port: an RF12demo command, or ``node v1 v2 ...`` for a node.

        Raises ValueError, saying why, for a line that is neither.
        """
        text = line.strip()
        if self.repeat_frame(text):
            return
        command, gap = rf12demo.check_command(text)
        if not self.send_command(command.encode(), gap):
            raise ValueError("not sent: " + ("the port is closed" if self.port is None
                                             else "too many commands queued"))

    # -- time ---------------------------------------------------------------------------
    def _broadcast_time(self) -> None:
        """Send ``00,HH,MM,00,s`` now and every ``sendtimeinterval`` seconds (emonGLCD clocks)."""
        self._timers.pop("time", None)
        self.send_command(rf12demo.time_command().encode(), rf12demo.SEND_GAP)
        self._timers["time"] = self.loop.call_later(self.settings["sendtimeinterval"], self._broadcast_time)


class RFM12PiListener(RFM2PiListener):
    """The original RFM12Pi board (9600 baud); the original gateway's type names mean this."""

    SPEC = """
    com_baud = integer(min=50, max=4000000, default=9600)
    """
