"""RFM69 listener: the RFM69 radio module on a Raspberry Pi's SPI bus (emonBase, emonPi2/3, emonHP).

Receives the packets of emonTx4/5/6, emonTH and emonPi nodes in LowPowerLab format (or JeeLib's
native RFM69 format), ACKs them, drops a node's retransmissions, and emits each packet as a
RawFrame with its RSSI: the node decoder turns the bytes into values per ``[nodes]``, exactly
as for the serial radio boards. Transmits for the gateway's TX paths (MQTT TX topic, repeater
port, emonGLCD time).

The chip is driven by ``protocols.rfm69_radio`` (a blocking driver). Its SPI and GPIO calls never
run on the loop thread: a receiver thread blocks on the DIO0 interrupt line's edge events (or
polls RegIrqFlags2 when edge events are not available) and hands each packet to the loop thread;
a sender thread blocks on a queue of packets to send (a packet queued before the receiver
has opened the radio waits for it). The driver's lock keeps the two from
talking to the chip at once. ``close()`` wakes the receiver through a pipe it selects on with
the interrupt line, so nothing wakes up just to see whether it should stop: idle, the
receiver reads the chip's flags once a second (the driver's safety net for a missed edge).

A radio that hears nothing for ``watchdog`` seconds is reset and configured again (emonhub does
the same after 300 s); one that stops answering is re-initialised at once; one that cannot be
opened (not fitted, SPI disabled, pins wrong) is retried with backoff, 1 s doubling to 60 s,
and the reason is logged once and shown in the status.
"""

import importlib.util
import logging
import os
import queue
import threading
import time
from typing import List, Optional, Sequence

from gateway.backoff import Backoff
from gateway.frame import RawFrame
from gateway.logs import LogThrottle
from protocols import rf12demo
from listeners.base import Listener
from listeners.radio_tx import RadioTransmitter
from listeners.repeater import RepeaterServer
from protocols.rfm69_radio import (BOARD_PINS, BadPacket, DuplicateFilter, Packet, Pins, RadioError, RadioSettings, Rfm69Radio, Watchdog,
                                   frf_for, message_counter)

RECEIVE_SLICE = 60.0   # s the receiver waits at most in one call (the driver looks at the chip every 1 s)
OPEN_RETRY_MIN, OPEN_RETRY_MAX = 1.0, 60.0
STOP_WAIT = 5.0        # s close() waits for a thread in the middle of an exchange with the chip
TX_QUEUE = 32          # packets waiting to be sent; beyond, a packet is refused (logged)
_SEND_COMMAND = rf12demo._COMMAND


def _pin(value) -> Optional[int]:
    """A pin setting: a whole number, or ``none``/``-1`` for not wired. ValueError otherwise."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in ("none", "-1", ""):
        return None
    number = int(text)
    if number < 0:
        raise ValueError
    return number


class Rfm69Listener(Listener, RadioTransmitter):
    """Type ``rfm69``. Every key, with its default (shown again in the shipped oemgateway.conf):

    radio_format = lpl     lpl: LowPowerLab packets, as emonTx4/5/6, emonTH2 and emonPi2/3
                           firmware send them (emonhub's RFM69LPL); jeelib: JeeLib's native
                           RFM69 format (emonhub's RF69, ``group``/``nodeid``)
    nodeid = 5             this receiver's node id (lpl 1-254; jeelib 1-63, 63 hears every node).
                           OEM nodes send to node 5
    group = 210            the network id (lpl) or group (jeelib), 1-255
    frequency = 43         emonhub's band code: 43 = 433.00 MHz (firmware before emonTx4 1.7.0),
                           49 = 433.92 MHz (since), 86, 91, 31; or the frequency in MHz
                           (jeelib default: 434)
    encryption_key = (OEM's key)   16 characters; ``none`` for no encryption (lpl: OEM's
                           fixed key, in every emonTx4/5/6 and emonPi2/3; jeelib: none). Secret
    tx_power = (+4 lpl, +7 jeelib)   transmit power in dBm, -18 to +13
    promiscuous = False    also pass on packets addressed to other nodes (never ACKed)
    auto_ack = True        ACK the LPL packets that ask for one (the nodes retry without)
    crc_errors = False     keep packets with a CRC error so they are counted (the chip drops
                           them silently otherwise, as emonhub sets it up)
    board = emonbase       the default pins: emonbase, emonpi2, emonpi3, emonhp
    pin_numbering = bcm    bcm: the pins below are GPIO (BCM) numbers; header: physical
                           header pins, as emonhub's interruptPin/selPin/resetPin are
    irq_pin, cs_pin, reset_pin   the DIO0 interrupt, a chip select driven by hand, the radio's
                           reset; left out: as ``board`` wires them; ``none``: not wired (no
                           cs_pin: the SPI device's own chip select)
    gpio_chip = auto       the gpiochip of the pins (auto: the Pi header's, found by its label)
    spi_bus = 0, spi_device = 0, spi_speed = 4000000   /dev/spidev<bus>.<device>, Hz
    duplicate_window = 0.5  s: the same packet from a node again within this is a retry,
                           dropped (a node whose [nodes] names start with MSG: the same message
                           counter). 0: keep every packet
    watchdog = 300         s without a packet (counted from the first) before the radio is reset
                           and configured again; 0: never
    watchdog_from_start = False   count the watchdog from every (re)initialisation, not from
                           the first packet (a receiver that should always hear something)
    poll_interval = 0.02   s between reads of the chip when the interrupt line has no edge
                           events (no gpiod, no permission, line taken)
    sendtimeinterval = 0   s between emonGLCD time broadcasts ([0, hour, minute, 0]); 0: never
    repeater_port = 0, repeater_bind = 127.0.0.1   a TCP port whose lines go out on the radio:
                           ``node v1 v2 ...`` (packed per [nodes] [[[tx]]]) or ``12,34,56,s``
                           / ``12,34,10s`` (bytes to all / to node 10). 0: none
    """

    SPEC = """
    radio_format = option('lpl', 'jeelib', default='lpl')
    nodeid = integer(min=1, max=254, default=5)
    group = integer(min=1, max=255, default=210)
    frequency = float(min=31, max=1020, default=None)
    encryption_key = string(default=None)
    tx_power = integer(min=-18, max=13, default=None)
    promiscuous = boolean(default=False)
    auto_ack = boolean(default=True)
    crc_errors = boolean(default=False)
    board = option('emonbase', 'emonpi2', 'emonpi3', 'emonhp', default='emonbase')
    pin_numbering = option('bcm', 'header', default='bcm')
    irq_pin = string(default=None)
    cs_pin = string(default=None)
    reset_pin = string(default=None)
    gpio_chip = string(default='auto')
    spi_bus = integer(min=0, max=255, default=0)
    spi_device = integer(min=0, max=255, default=0)
    spi_speed = integer(min=100000, max=10000000, default=4000000)
    duplicate_window = float(min=0, max=60, default=0.5)
    watchdog = float(min=0, max=86400, default=300)
    watchdog_from_start = boolean(default=False)
    poll_interval = float(min=0.001, max=1, default=0.02)
    sendtimeinterval = float(min=0, max=86400, default=0)
    repeater_port = integer(min=0, max=65535, default=0)
    repeater_bind = string(default='127.0.0.1')
    """
    SAMPLE = """
    # The RFM69 radio on the Pi's SPI bus (emonBase, emonPi2/3, emonHP): receives emonTx4/5/6,
    # emonTH2 and emonPi nodes, ACKs them and decodes their packets per [nodes] below, with
    # each packet's RSSI; transmits for the MQTT TX topic, the repeater port and emonGLCD time.
    # Needs SPI on (dtparam=spi=on), the user in the spi and gpio groups, and the packages
    # spidev and gpiod (libgpiod 2): pip install 'oemgateway[radio]'.
    [[...]]
    # lpl: LowPowerLab packets (emonTx4/5/6, emonTH2, emonPi2/3 firmware); jeelib:
    # JeeLib's native RFM69 format.
    radio_format
    # This receiver's node id (lpl 1-254; jeelib 1-63, 63 hears every node). OEM nodes send to 5.
    nodeid
    # The network id (lpl) or group (jeelib), 1-255.
    group
    # 43 = 433.00 MHz (firmware before emonTx4 1.7.0), 49 = 433.92 MHz (since), 86, 91,
    # 31, or MHz. Default: 43 (jeelib: 434).
    # frequency = 43
    # 16 characters, or none. Default: OEM's key (lpl), none (jeelib). Never logged.
    # encryption_key =
    # Transmit power in dBm, -18 to 13. Default: 4 (lpl), 7 (jeelib).
    # tx_power = 4
    # True: also pass on packets addressed to other nodes (never ACKed).
    promiscuous
    # ACK the LPL packets that ask for one.
    auto_ack
    # True: keep packets with a CRC error so they are counted (else the chip drops them).
    crc_errors
    # The default pins: emonbase (DIO0 GPIO25, chip select GPIO7, no reset), emonpi2,
    # emonpi3, emonhp (GPIO25, GPIO23, reset GPIO8).
    board
    # bcm: the pins below are GPIO numbers; header: physical header pins, as emonhub's
    # interruptPin, selPin and resetPin are.
    pin_numbering
    # Pins, each left out: as 'board' wires it; none: not wired (no cs_pin: the SPI
    # device's own chip select).
    # irq_pin =
    # cs_pin =
    # reset_pin =
    # The gpiochip of the pins (auto: the Pi header's, found by its label).
    gpio_chip
    # /dev/spidev<spi_bus>.<spi_device>, and its clock in Hz.
    spi_bus
    spi_device
    spi_speed
    # The same packet from a node again within this many seconds is a retry and dropped
    # (nodes whose [nodes] names start with MSG: the same message counter). 0: keep all.
    duplicate_window
    # Seconds without a packet (counted from the first) before the radio is reset and
    # configured again. 0: never. watchdog_from_start: count from each start instead.
    watchdog
    watchdog_from_start
    # Seconds between reads of the chip when the interrupt line gives no edge events.
    poll_interval
    # Broadcast the time [0, hour, minute, 0] every this many seconds for emonGLCD; 0: never.
    sendtimeinterval
    # A TCP port whose lines go out on the radio: "node v1 v2 ..." (packed per [nodes]
    # [[node]] [[[tx]]]) or bytes as 12,34,s (to all) / 12,34,10s (to node 10). 0: none.
    repeater_port
    repeater_bind
    nodelistonly
    """
    SECRETS = ("encryption_key",)
    LIVE_SETTINGS = Listener.LIVE_SETTINGS | {"sendtimeinterval", "duplicate_window", "watchdog",
                                              "watchdog_from_start"}

    def __init__(self, *args, spi=None, gpiod=None, **kwargs):
        """``spi``/``gpiod`` replace the spidev device and the gpiod module (for benchmarks);
        by default they are imported when the radio opens."""
        super().__init__(*args, **kwargs)
        self.radio_settings = self.radio_settings_of(self.settings)
        self.duplicates = DuplicateFilter(self.settings["duplicate_window"], counter=self._message_counter)
        self.watchdog = Watchdog(self.settings["watchdog"] or 1.0, from_start=self.settings["watchdog_from_start"])
        self._injected = {"spidev": spi is not None, "gpiod": gpiod is not None}
        self.radio = Rfm69Radio(self.radio_settings, spi=spi, gpiod=gpiod, duplicates=self.duplicates,
                                poll_interval=self.settings["poll_interval"])
        self.state = "starting"
        self.problem: Optional[str] = None        # why the radio is not receiving, for the status
        self.watchdog_resets = 0
        self.tx_dropped = 0
        self._stop = threading.Event()
        self._wake: Optional[tuple] = None   # a pipe: close() writes to it, the receiver stops waiting
        self._tx_failed: Optional[RadioError] = None   # set by the sender, handled by the receiver
        self._outbox: "queue.Queue" = queue.Queue(TX_QUEUE)
        self._radio_ready = threading.Condition()   # the sender waits on it for state "open" (or stop)
        self._threads: List[threading.Thread] = []
        self._time_timer = None
        self.tx_problems = LogThrottle(self.log, schedule=self.loop.call_later)

    # -- settings -----------------------------------------------------------------------
    @classmethod
    def radio_settings_of(cls, settings: dict) -> RadioSettings:
        """The driver's settings from the listener's; ValueError naming the key when wrong."""
        fmt = settings.get("radio_format", "lpl")
        pins = BOARD_PINS[settings.get("board") or "emonbase"]
        given = {}
        for key, field in (("irq_pin", "irq"), ("cs_pin", "cs"), ("reset_pin", "reset")):
            if settings.get(key) is None:
                continue
            try:
                given[field] = _pin(settings[key])
            except ValueError:
                raise ValueError(f"{key} = {settings[key]}: expected a pin number, or none") from None
        if settings.get("pin_numbering") == "header":
            header = {}
            for key, field in (("irq_pin", "irq"), ("cs_pin", "cs"), ("reset_pin", "reset")):
                if field in given:
                    try:
                        header[field] = Pins.from_header(given[field], None, None).irq
                    except ValueError as exc:
                        raise ValueError(f"{key} = {settings[key]}: {exc}") from None
            given = header
        try:
            pins = Pins(**{"irq": pins.irq, "cs": pins.cs, "reset": pins.reset, **given})
        except ValueError as exc:
            raise ValueError(f"irq_pin, cs_pin, reset_pin: {exc}") from None
        options = dict(node_id=settings.get("nodeid", 5), network=settings.get("group", 210),
                       promiscuous=settings.get("promiscuous", False),
                       auto_ack=settings.get("auto_ack", True), crc_errors=settings.get("crc_errors", False),
                       spi_bus=settings.get("spi_bus", 0), spi_device=settings.get("spi_device", 0),
                       spi_speed_hz=settings.get("spi_speed", 4_000_000), pins=pins,
                       gpio_chip=settings.get("gpio_chip") or "auto")
        frequency = settings.get("frequency")
        if frequency is not None:
            frequency = int(frequency) if float(frequency).is_integer() and int(frequency) < 100 else frequency
            try:
                frf_for(frequency)
            except ValueError as exc:
                raise ValueError(f"frequency = {settings['frequency']}: {exc}") from None
            options["frequency"] = frequency
        key = settings.get("encryption_key")
        if key is not None:
            options["aes_key"] = None if key.strip().lower() == "none" else key
        if settings.get("tx_power") is not None:
            options["tx_power_dbm"] = settings["tx_power"]
        builder = RadioSettings.jeelib if fmt == "jeelib" else RadioSettings.lpl
        try:
            return builder(**options)
        except ValueError as exc:
            text = str(exc)
            for ours, theirs in (("nodeid", "node_id"), ("group", "network"), ("encryption_key", "aes_key"),
                                 ("tx_power", "tx_power_dbm")):
                text = text.replace(theirs, ours)
            raise ValueError(text) from None

    @classmethod
    def check_settings(cls, settings: dict) -> List[str]:
        try:
            cls.radio_settings_of(settings)
        except ValueError as exc:
            return [str(exc)]
        return []

    @classmethod
    def warn_settings(cls, settings: dict) -> List[str]:
        return super().warn_settings(settings) + RepeaterServer.warnings_of(settings)

    @classmethod
    def claims(cls, settings: dict) -> list:
        """The SPI device (one reader per device), and the repeater's TCP port."""
        device = ("device", f"/dev/spidev{settings.get('spi_bus', 0)}.{settings.get('spi_device', 0)}")
        return [("spi_device", device)] + RepeaterServer.claims_of(settings)

    def apply_settings(self, changed: set) -> None:
        self.duplicates.window = self.settings["duplicate_window"]
        self.watchdog.period = self.settings["watchdog"] or 1.0
        self.watchdog.from_start = self.settings["watchdog_from_start"]
        if "sendtimeinterval" in changed:
            self._cancel_time()
            if self.settings["sendtimeinterval"] > 0:
                self._broadcast_time()

    def _message_counter(self, sender: int, payload: bytes) -> Optional[int]:
        """The node's MSG counter, for nodes whose [nodes] names start with MSG (receiver thread)."""
        spec = self.nodes.table.get(sender)
        names = spec.rx.names if spec is not None else ()
        return message_counter(payload) if names and names[0].lower() == "msg" else None

    # -- the contract -------------------------------------------------------------------
    def open(self) -> None:
        self.open_repeater()
        self._wake = os.pipe()
        os.set_blocking(self._wake[0], False)
        for target, name in ((self._receive_loop, "rx"), (self._send_loop, "tx")):
            thread = threading.Thread(target=target, name=f"rfm69-{self.name}-{name}", daemon=True)
            self._threads.append(thread)
            thread.start()
        if self.settings["sendtimeinterval"] > 0:
            self._broadcast_time()

    def close(self) -> None:
        """Stop both threads (woken at once through the pipe and the queue) and release the radio."""
        self._stop.set()
        self._wake_receiver()
        self._tell_sender()
        self._cancel_time()
        self.close_repeater()
        try:
            self._outbox.put_nowait(None)
        except queue.Full:
            pass
        for thread in self._threads:
            thread.join(STOP_WAIT)
            if thread.is_alive():
                self.log.warning("%s: the radio's %s thread did not stop in time", self, thread.name)
        self._threads = []
        if self._wake is not None:
            for fd in self._wake:
                os.close(fd)
            self._wake = None
        self.radio.close()
        self.state = "closed"
        super().close()
        self.tx_problems.flush()

    # -- the receiver thread ------------------------------------------------------------
    def _receive_loop(self) -> None:
        backoff = Backoff(OPEN_RETRY_MIN, OPEN_RETRY_MAX)
        while not self._stop.is_set():
            if not self._open_radio():
                self._stop.wait(backoff.next())
                continue
            backoff.reset()
            try:
                self._receive_until_stopped()
            except RadioError as exc:
                self._report(logging.WARNING, "%s: %s: initialising the radio again", self, exc)
                try:
                    self.radio.reinitialise()
                    self.watchdog.started()
                except RadioError as again:
                    self._report(logging.WARNING, "%s: %s: reopening it", self, again)
                    self.problem = str(again)
                    self.state = "failed"        # before closing: the sender holds its packets from now
                    self.radio.close()

    def missing_packages(self) -> List[str]:
        """The packages the radio needs that are not installed: spidev always, gpiod when a pin
        is wired (without any, the radio is polled on the SPI device's own chip select)."""
        pins = self.radio_settings.pins
        needed = ["spidev"] + (["gpiod"] if (pins.irq, pins.cs, pins.reset) != (None, None, None) else [])
        return [name for name in needed if not self._injected[name] and importlib.util.find_spec(name) is None]

    def _open_radio(self) -> bool:
        if self.radio.is_open:
            return True
        missing = self.missing_packages()
        try:
            if missing:
                raise RadioError(f"the {' and '.join(missing)} package{'s are' if len(missing) > 1 else ' is'} "
                                 f"not installed: pip install 'oemgateway[radio]' (or: pip install "
                                 f"{' '.join('gpiod>=2' if m == 'gpiod' else m for m in missing)})")
            self.radio.open()
        except RadioError as exc:
            if self.problem != str(exc):
                self._report(logging.WARNING, "%s: %s; trying again in %g s, then less often (every "
                             "%g s at most)", self, exc, OPEN_RETRY_MIN, OPEN_RETRY_MAX)
            self.problem, self.state = str(exc), "failed"
            return False
        self.problem, self.state = None, "open"
        self._tell_sender()
        self.watchdog.started()
        s = self.radio_settings
        how = "waiting on GPIO%s edges" % s.pins.irq if not self.radio.polling else \
            f"polling every {self.radio.poll_interval * 1000:g} ms ({self.radio.edge_problem})"
        self._report(logging.INFO, "%s: RFM69 (version 0x%02X) on %s: %s format, node %d, %s %d, %s, %s",
                     self, self.radio.version or 0, self.radio.bus.where, s.format, s.node_id,
                     "network" if s.format == "lpl" else "group", s.network, _describe_frequency(s.frequency),
                     how)
        return True

    def _receive_until_stopped(self) -> None:
        while not self._stop.is_set():
            failed, self._tx_failed = self._tx_failed, None
            if failed is not None:
                raise failed
            result = self.radio.receive(self._receive_timeout(), wake=self._wake[0])
            self._drain_wake()
            if result is not None:
                stamp = time.time()
                if isinstance(result, Packet):
                    self.watchdog.packet()
                self.loop.call_soon_threadsafe(lambda r=result, t=stamp: self._received(r, t))
            elif self.settings["watchdog"] and self.watchdog.expired():
                self.watchdog_resets += 1
                self._report(logging.WARNING, "%s: no packet for %g s: resetting and configuring the "
                             "radio again (watchdog)", self, self.settings["watchdog"])
                self.radio.reinitialise()
                self.watchdog.started()

    def _wake_receiver(self) -> None:
        """Make the receiver's wait end now (from close(), or the sender after a failure)."""
        if self._wake is not None:
            os.write(self._wake[1], b"x")

    def _drain_wake(self) -> None:
        try:
            os.read(self._wake[0], 64)
        except BlockingIOError:
            pass

    def _receive_timeout(self) -> float:
        """How long the next wait may be: until the watchdog is due, at most RECEIVE_SLICE."""
        due = self.watchdog.due_in() if self.settings["watchdog"] else None
        return RECEIVE_SLICE if due is None else min(RECEIVE_SLICE, max(due, 0.001))

    def _report(self, level: int, message: str, *args) -> None:
        """Log from the receiver or sender thread (the logging module is thread-safe)."""
        self.log.log(level, message, *args)

    # -- on the loop thread -------------------------------------------------------------
    def _received(self, result, stamp: float) -> None:
        if isinstance(result, BadPacket):
            self.reject(f"{result.reason}: {result.detail}", result.data.hex(" "))
            return
        if not result.payload:
            return
        self.emit(RawFrame(result.sender, result.payload, stamp, result.rssi, self.name))

    # -- transmitting -------------------------------------------------------------------
    def transmit(self, payload: Sequence[int], dest: int = 0) -> bool:
        """Queue a radio packet: ``payload`` bytes to node ``dest`` (the format's broadcast id for
        0). Raises ValueError for what a packet cannot carry; False, logged, when the queue is full."""
        target = self.radio.broadcast_id if dest == 0 else dest
        data = bytes(payload)
        self.radio.format.frame(target, data)       # ValueError now, not on the sender thread
        try:
            self._outbox.put_nowait((target, data))
            return True
        except queue.Full:
            self.tx_dropped += 1
            self.tx_problems("%s: radio packet for node %s not sent: %d packets are waiting already",
                             self, dest, TX_QUEUE)
            return False

    def repeat(self, line: str) -> None:
        """A line from the repeater port: ``node v1 v2 ...``, or bytes as RF12demo writes a
        transmission (``12,34,s`` to all, ``12,34,10s`` to node 10). ValueError says why not."""
        text = line.strip()
        if self.repeat_frame(text):
            return
        match = _SEND_COMMAND.fullmatch(text)
        if match is None or match.group(3) != "s" or not match.group(1):
            raise ValueError("an SPI radio takes 'node v1 v2 ...' or bytes to send (12,34,s); its "
                             "settings are in the config")
        payload = [int(n) for n in match.group(1).split(",") if n]
        if any(b > 255 for b in payload):
            raise ValueError("a byte is 0-255")
        if not self.transmit(payload, int(match.group(2) or 0)):
            raise ValueError("not sent: too many packets waiting")

    def _send_loop(self) -> None:
        while True:
            item = self._outbox.get()
            if item is None or self._stop.is_set():
                return
            target, data = item
            if not self._wait_until_open(target):
                return
            try:
                self.radio.transmit(target, data)
            except (RadioError, ValueError) as exc:
                self.tx_dropped += 1
                self._report(logging.WARNING, "%s: radio packet for node %s not sent: %s", self, target, exc)
                if isinstance(exc, RadioError) and self.radio.is_open:
                    self._tx_failed = exc      # the receiver initialises the radio again
                    self._wake_receiver()

    def _wait_until_open(self, target: int) -> bool:
        """Hold a packet until the receiver has opened the radio (packets are queued from the
        start, the emonGLCD time at once; the radio may take a while, or be retried for long).
        False when the listener is closing instead."""
        with self._radio_ready:
            if self.state != "open" and not self._stop.is_set():
                self._report(logging.DEBUG, "%s: radio packet for node %s waits until the radio is open",
                             self, target)
            self._radio_ready.wait_for(lambda: self.state == "open" or self._stop.is_set())
        return not self._stop.is_set()

    def _tell_sender(self) -> None:
        """Wake the sender waiting for the radio (it was opened, or the listener is closing)."""
        with self._radio_ready:
            self._radio_ready.notify_all()

    def _broadcast_time(self) -> None:
        """Broadcast [0, hour, minute, 0] now and every ``sendtimeinterval`` s (emonGLCD clocks)."""
        now = time.localtime()
        self.transmit([0, now.tm_hour, now.tm_min, 0])
        self._time_timer = self.loop.call_later(self.settings["sendtimeinterval"], self._broadcast_time)

    def _cancel_time(self) -> None:
        if self._time_timer is not None:
            self._time_timer.cancel()
            self._time_timer = None

    # -- status -------------------------------------------------------------------------
    def status_details(self) -> dict:
        """The radio as one device in /status: state, why it is not receiving, its counters."""
        counters = self.radio.counters
        last = self.stats.last_frame_time
        errors = counters.bad_length + counters.bad_crc + counters.wrong_network
        return {"devices": {self.radio.bus.where: {
            "state": self.state, "last_error": self.problem, "errors": errors,
            "last_good_read_age_s": None if last is None else round(max(0.0, time.time() - last), 1),
            "interrupt": "polling" if self.radio.polling else "edge events",
            "edge_problem": self.radio.edge_problem if self.state == "open" else None,
            "received": counters.received, "duplicates": counters.duplicates,
            "bad_length": counters.bad_length, "bad_crc": counters.bad_crc,
            "wrong_network": counters.wrong_network, "not_for_us": counters.not_for_us,
            "acks_sent": counters.acks_sent, "transmitted": counters.transmitted,
            "tx_dropped": self.tx_dropped, "initialised": counters.initialised,
            "watchdog_resets": self.watchdog_resets}}}


def _describe_frequency(frequency) -> str:
    names = {43: "433.00 MHz (band 43)", 49: "433.92 MHz (band 49)", 86: "868 MHz", 91: "915 MHz",
             31: "315 MHz"}
    return names.get(frequency, f"{frequency} MHz")
