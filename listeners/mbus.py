"""M-Bus meters (heat meters, mostly): a serial M-Bus adapter (type ``mbus``, 2400 baud 8E1,
primary addressing) or M-Bus over TCP (type ``mbus_tcp``: a serial server in front of the bus).

Each meter names a preset (``meter = kamstrup_multical``, ``heat_meter``, ``sontex_supercal_531``,
``qalcosonic_e3``...) or emonhub's ``type`` (``kamstrup403``, ``sontex531``...), and its primary
``address``. A read resets the meter's link (SND_NKE), selects a page where the preset needs one,
requests its data (REQ_UD2) and follows a meter that answers in several telegrams, asking
again for an answer lost or garbled (a bad checksum) with the same FCB
(``protocols.mbus_meters.MeterRead``). Telegrams are decoded by ``protocols.mbus_telegram``
(EN 13757-3), energy in kWh, volume m³, power W, flow m³/h, temperatures °C.

An adapter that echoes what it sends is fine: the echo is recognised (a master's frame) and
skipped. A meter that does not answer its link reset is asked again with backoff
(``listeners.polling``) and costs the others three short ack timeouts (0.9 s at 2400 baud).

Settings of ``mbus`` (serial), with their defaults:

``com_port`` (/dev/ttyUSB0)   the M-Bus adapter (prefer its /dev/serial/by-id/... name)
``com_baud`` (2400)           the bus speed (meters: 2400, some 300 or 9600); 8 data bits, even
                              parity, 1 stop bit
``timeout`` (0)               seconds to wait for an answer; 0: the time EN 13757-2 allows at
                              com_baud (2.1 s for data at 2400 baud, 0.3 s for an acknowledgement)
``validate_checksum`` (True)  False takes long frames with a wrong checksum (emonhub's setting,
                              for a meter known to send them; they are counted)
``link_reset`` (True)         False starts each read with REQ_UD2 as emonhub does, for a meter
                              that mishandles SND_NKE
``usb_vid``, ``usb_pid`` (none) find the adapter by its USB ids (``listeners.meters``)
``interval`` (10), ``retry_max`` (300), ``nodename`` ('')  as every meter bus

``mbus_tcp`` has ``host`` (required) and ``port`` (10001) instead of ``com_port`` and
``com_baud``, and ``timeout`` 3 s by default.

A meter's sub-section: ``address`` (1; 0-250, or 254 for the only meter on the bus), ``meter``
(a preset, default ``standard``: every present value) or ``type`` (emonhub's), and ``naming``
(``descriptive``, or ``emonhub`` for emonhub's input names; the default with ``type``; with the
``standard`` preset it also reports every record emonhub's ``standard`` reports).
"""

import select
import socket
import time
from typing import List, Optional

import serial

from gateway.logs import error_text
from listeners.meters import SERIAL_BUS_SPEC, MeterBusListener, MeterDevice, find_serial_port, input_name
from listeners.polling import PollError
from listeners.serialport import describe_open_error
from protocols.mbus_meters import Exchange, MeterRead, MeterSettings, meter_settings
from protocols.mbus_telegram import Ack, FrameError, FrameParser, LongFrame, reply_timeout

TCP_CONNECT_TIMEOUT = 5.0


class MBusLink:
    """One request and its answer at a time, on a serial port or a TCP connection that is opened
    at the first request (on the worker thread) and again after a failure."""

    def __init__(self, where: str, check_checksum: bool, data_timeout: float, ack_timeout: float):
        self.where = where
        self.parser = FrameParser(check_checksum)
        self.data_timeout, self.ack_timeout = data_timeout, ack_timeout

    # -- the transport (a subclass's) ------------------------------------------------------------
    def connect(self) -> None:
        raise NotImplementedError

    @property
    def connected(self) -> bool:
        raise NotImplementedError

    def send(self, data: bytes) -> None:
        raise NotImplementedError

    def receive(self, size: int, timeout: float) -> bytes:
        """Up to ``size`` bytes, waiting at most ``timeout`` s; b"" when none came."""
        raise NotImplementedError

    def discard_input(self) -> None:
        """Forget bytes that came late (the rest of an answer given up on)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # -- exchanges -------------------------------------------------------------------------------
    def exchange(self, exchange: Exchange):
        """Send ``exchange.frame``; the meter's answer (Ack, LongFrame, FrameError) or None."""
        if not self.connected:
            self.connect()
        self.discard_input()
        self.parser.reset()
        try:
            self.send(exchange.frame)
            deadline = time.monotonic() + (self.data_timeout if exchange.expect == "data" else self.ack_timeout)
            while True:
                remaining = deadline - time.monotonic()
                items = (self.parser.feed(self.receive(max(1, self.parser.pending), remaining)) if remaining > 0
                         else self.parser.end())
                answer = next((item for item in items if _from_meter(item)), None)
                if answer is not None or remaining <= 0:
                    return answer
        except (OSError, serial.SerialException) as exc:
            self.close()
            raise PollError(f"lost {self.where}: {error_text(exc)}") from None


def _from_meter(item) -> bool:
    """An answer, not an adapter's echo of the request (a master's frame)."""
    return isinstance(item, (Ack, FrameError)) or (isinstance(item, LongFrame) and not item.from_master)


class SerialLink(MBusLink):
    def __init__(self, settings: dict, **kwargs):
        super().__init__(settings["com_port"], **kwargs)
        self.settings = settings
        self.port: Optional[serial.SerialBase] = None

    @property
    def connected(self) -> bool:
        return self.port is not None

    def connect(self) -> None:
        self.where = find_serial_port(self.settings)
        try:
            self.port = serial.serial_for_url(self.where, baudrate=self.settings["com_baud"], bytesize=8,
                                              parity=serial.PARITY_EVEN, stopbits=1, timeout=0, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PollError(f"cannot open {self.where}: {describe_open_error(self.where, exc)[1]}") from None

    def send(self, data: bytes) -> None:
        self.port.write(data)

    def receive(self, size: int, timeout: float) -> bytes:
        if not select.select([self.port.fileno()], [], [], timeout)[0]:
            return b""
        data = self.port.read(max(size, self.port.in_waiting))
        if not data:   # readable, yet nothing: the adapter is gone (pyserial says so for a device)
            raise serial.SerialException("the device reports readiness but returns no data")
        return data

    def discard_input(self) -> None:
        self.port.reset_input_buffer()

    def close(self) -> None:
        port, self.port = self.port, None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError):
                pass


class TcpLink(MBusLink):
    def __init__(self, host: str, port: int, **kwargs):
        super().__init__(f"{host}:{port}", **kwargs)
        self.address = (host, port)
        self.sock: Optional[socket.socket] = None

    @property
    def connected(self) -> bool:
        return self.sock is not None

    def connect(self) -> None:
        try:
            self.sock = socket.create_connection(self.address, timeout=TCP_CONNECT_TIMEOUT)
        except OSError as exc:
            raise PollError(f"cannot connect to {self.where}: {error_text(exc)}") from None

    def send(self, data: bytes) -> None:
        self.sock.settimeout(TCP_CONNECT_TIMEOUT)
        self.sock.sendall(data)

    def receive(self, size: int, timeout: float) -> bytes:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(max(size, 256))
        except socket.timeout:
            return b""
        if not data:
            raise ConnectionResetError(0, "the connection was closed")
        return data

    def discard_input(self) -> None:
        self.sock.setblocking(False)
        try:
            while self.sock.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        finally:
            self.sock.setblocking(True)

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()


class MBusMeter(MeterDevice):
    """One meter: a ``MeterRead`` driven over the bus's link."""

    def __init__(self, listener: "MBusMeters", meter: MeterSettings):
        super().__init__(listener, meter)
        self.missing: List[str] = []

    def read(self):
        read = MeterRead(self.meter.meter, self.meter.address, self.meter.naming,
                         link_reset=self.listener.settings["link_reset"])
        exchange = read.next()
        while exchange is not None:
            read.answer(self.listener.bus.exchange(exchange))
            exchange = read.next()
        if not read.readings:
            raise PollError("; ".join(read.errors) or f"address {self.meter.address}: the meter's telegrams "
                                                       "hold none of the values its preset reads")
        if read.missing != self.missing:
            self.listener.log.info("%s: meter %s (%s): its telegrams do not hold %s", self.listener, self.name,
                                   self.meter.meter.name, ", ".join(read.missing))
            self.missing = read.missing
        if self.meter.naming == "emonhub":           # emonhub's own names, "Ontime Hours" with its space
            return [tuple(r) for r in read.readings], read.errors
        return [(input_name(r.name), r.value, r.unit) for r in read.readings], read.errors

    def describe(self) -> dict:
        return dict(super().describe(), meter=self.meter.meter.name, missing=list(self.missing))


class MBusMeters(MeterBusListener):
    """What both M-Bus listeners share: meters by preset and primary address."""

    SPEC = """
    validate_checksum = boolean(default=True)
    link_reset = boolean(default=True)
    """
    DEVICE = MBusMeter

    @classmethod
    def parse_meter(cls, name: str, section: dict, settings: dict) -> MeterSettings:
        return meter_settings(name, section)

    def link_settings(self, data_timeout: float, ack_timeout: float) -> dict:
        return {"check_checksum": self.settings["validate_checksum"], "data_timeout": data_timeout,
                "ack_timeout": ack_timeout}


class MBusListener(MBusMeters):
    """M-Bus meters behind a serial M-Bus adapter."""

    SPEC = """
    com_port = string(default='/dev/ttyUSB0')
    com_baud = integer(min=300, max=38400, default=2400)
    timeout = float(min=0, max=60, default=0)
    """ + SERIAL_BUS_SPEC
    SAMPLE = """
    # M-Bus heat meters on a serial M-Bus adapter (8 data bits, even parity, 1 stop bit).
    [[...]]
    com_port = /dev/ttyUSB1
    # The adapter found by its USB ids instead (emonHP's: 1659, 9123), as emonhub does.
    # usb_vid =
    # usb_pid =
    com_baud
    # Seconds to wait for an answer; 0: the time EN 13757-2 allows at com_baud.
    timeout
    # False: take long frames with a wrong checksum (counted), for a meter known to send them.
    validate_checksum
    # False: start each read with REQ_UD2, without resetting the meter's link first.
    link_reset
    interval
    retry_max
    nodename
    [[[meters]]]
        # A preset: standard (every present value), heat_meter (sharky_775, sontex_789,
        # landis_gyr_ultraheat_t230...), kamstrup_multical, sontex_supercal_531,
        # qalcosonic_e3, eastron_sdm120_mbus; or emonhub's 'type = kamstrup403' etc., which
        # keeps emonhub's input names. Address: primary, 0-250 (254: the only meter).
        [[[[heatmeter]]]]
            meter = kamstrup_multical
            address = 1
            # descriptive (energy, flow_temp...) or emonhub (Energy, FlowT...)
            # naming = descriptive
    """

    def make_bus(self) -> SerialLink:
        baud, timeout = self.settings["com_baud"], self.settings["timeout"]
        return SerialLink(self.settings, **self.link_settings(
            timeout or reply_timeout(baud, data=True), timeout or reply_timeout(baud, data=False)))


class MBusTcpListener(MBusMeters):
    """M-Bus meters behind a TCP serial server (an M-Bus to Ethernet gateway)."""

    SPEC = """
    host = string
    port = integer(min=1, max=65535, default=10001)
    timeout = float(min=0.1, max=60, default=3)
    """
    SAMPLE = """
    # M-Bus over TCP: an M-Bus to Ethernet gateway.
    [[...]]
    host = 192.168.1.60
    port
    timeout
    validate_checksum
    link_reset
    interval
    retry_max
    nodename
    [[[meters]]]
        [[[[heatmeter]]]]
            meter = heat_meter
            address = 1
    """

    def make_bus(self) -> TcpLink:
        timeout = self.settings["timeout"]
        return TcpLink(self.settings["host"], self.settings["port"], **self.link_settings(timeout, timeout))
