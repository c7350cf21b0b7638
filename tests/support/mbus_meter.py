"""A simulated M-Bus meter: answers the master's frames as a meter's link layer does.

``answer(frame)`` takes the bytes the master sent and returns what the meter sends back (b""
for nothing). It follows EN 13757-2's frame count bit: after SND_NKE the next request with the
FCB set reads the first telegram; a REQ_UD2 whose FCB has toggled reads the next telegram; the
same FCB again repeats the last answer (the master lost it). SND_UD frames are acknowledged and
kept (a page select chooses which list of telegrams is read). Pure: ``MeterBus`` puts meters
behind a pseudo-terminal or a TCP port for the M-Bus listener's tests.
"""

import os
import select
import socket
import threading
import time
import tty
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from protocols.mbus_telegram import (ACK, REQ_UD2, SND_NKE, SND_UD, FCB, FrameParser, LongFrame, ShortFrame,
                                     long_frame)

TELEGRAMS = Path(__file__).resolve().parents[1] / "fixtures" / "mbus"


def load_hex(path) -> bytes:
    """The bytes of a ``.hex`` test frame (space-separated hex)."""
    with open(path) as f:
        return bytes.fromhex("".join(f.read().split()))


class SimulatedMeter:
    """One meter at ``address``; ``telegrams`` (complete long frames) per page, page 0 by default.

    ``silent`` makes it answer nothing; ``drop`` is how many of the next answers to lose (the
    meter answers, the master never sees it: the FCB rule must then repeat, not skip);
    ``garble`` how many of its next telegrams to damage on the line (a bad checksum).
    """

    def __init__(self, address: int, telegrams: Sequence[bytes], pages: Optional[Dict[int, Sequence[bytes]]] = None,
                 data_answers: Optional[Dict[int, bytes]] = None):
        self.address = address
        self.pages: Dict[int, List[bytes]] = {0: list(telegrams)}
        self.pages.update({page: list(frames) for page, frames in (pages or {}).items()})
        self.data_answers = dict(data_answers or {})     # CI of a SND_UD -> the RSP_UD it gets
        self.page = 0
        self.position = -1                 # index of the last telegram sent
        self.last_fcb: Optional[bool] = None
        self.silent = False
        self.drop = 0
        self.garble = 0
        self.received: List[bytes] = []
        self._parser = FrameParser()

    def answer(self, data: bytes) -> bytes:
        reply = b""
        for item in self._parser.feed(data):
            if isinstance(item, ShortFrame):
                reply += self._short(item)
            elif isinstance(item, LongFrame):
                reply += self._long(item)
        if self.silent:
            return b""
        if reply and self.drop:
            self.drop -= 1
            return b""
        if len(reply) > 20 and self.garble:
            self.garble -= 1
            return reply[:20] + bytes([reply[20] ^ 0x55]) + reply[21:]
        return reply

    def _mine(self, address: int) -> bool:
        return address in (self.address, 0xFE)

    def _short(self, frame: ShortFrame) -> bytes:
        self.received.append(bytes((frame.control,)))
        if not self._mine(frame.address):
            return b""
        if frame.control == SND_NKE:
            self.position, self.last_fcb = -1, None
            return bytes((ACK,))
        if frame.control & ~FCB == REQ_UD2:
            fcb = bool(frame.control & FCB)
            frames = self.pages.get(self.page, [])
            if not frames:
                return b""
            if fcb != self.last_fcb or self.position < 0:      # a new request: the next telegram
                self.position = (self.position + 1) % len(frames)
            self.last_fcb = fcb
            return frames[self.position]
        return b""

    def _long(self, frame: LongFrame) -> bytes:
        self.received.append(frame.encode())
        if not self._mine(frame.address) or frame.control & ~FCB != SND_UD:
            return b""
        self.last_fcb = bool(frame.control & FCB)
        if frame.ci == 0x51 and frame.data[:3] == b"\x01\xff\x08":      # emonhub's page select
            self.page, self.position = frame.data[3], -1
        if frame.ci in self.data_answers:
            return self.data_answers[frame.ci]
        return bytes((ACK,))


def telegram_frame(address: int, header: bytes, records: bytes, control: int = 0x08) -> bytes:
    """A RSP_UD long frame with CI 0x72 for a 12-byte ``header`` and ``records``."""
    return long_frame(control, address, 0x72, header + records)


def kamstrup_601(address: int = 1) -> SimulatedMeter:
    """A Kamstrup Multical 601 heat meter (its telegram from libmbus's test frames)."""
    return SimulatedMeter(address, [load_hex(TELEGRAMS / "kamstrup_multical_601.hex")])


def multi_telegram_meter(address: int = 2) -> SimulatedMeter:
    """A meter that answers in three telegrams: SVM F22's two (each says more records follow),
    then a last one of the same meter with one energy record (16 kWh) and no 0x1F."""
    first = load_hex(TELEGRAMS / "svm_f22_telegram1.hex")
    second = load_hex(TELEGRAMS / "svm_f22_telegram2.hex")
    return SimulatedMeter(address, [first, second, telegram_frame(address, first[7:19], b"\x04\x06\x10\x00\x00\x00")])


class MeterBus:
    """Meters on one M-Bus, served on a pseudo-terminal (the adapter the listener opens at
    ``link``) or a TCP port (an M-Bus to Ethernet gateway), by a thread. Every meter hears every
    frame; the one addressed answers. ``echo`` plays an adapter that echoes what it sends.
    ``answered`` holds the monotonic time of every telegram sent (the benchmarks time a reading
    from it)."""

    def __init__(self, meters: Sequence[SimulatedMeter], echo: bool = False):
        self.meters = list(meters)
        self.echo = echo
        self._stop_r, self._stop_w = os.pipe()
        self._fds: List[int] = []
        self._thread: Optional[threading.Thread] = None
        self.link: Optional[Path] = None
        self.answered: List[float] = []

    def _reply(self, data: bytes) -> bytes:
        answer = b"".join(meter.answer(data) for meter in self.meters)
        if len(answer) > 1:   # a telegram (not an E5 acknowledgement)
            self.answered.append(time.monotonic())
        return (data if self.echo else b"") + answer

    def start_serial(self, link: Path) -> Path:
        master, slave = os.openpty()
        tty.setraw(slave)
        self._fds += [master, slave]
        self.link = Path(link)
        os.symlink(os.ttyname(slave), self.link)
        self._start(self._serve_fd, master)
        return self.link

    def start_tcp(self) -> int:
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        self._start(self._serve_tcp, server)
        return server.getsockname()[1]

    def _start(self, target, arg) -> None:
        self._thread = threading.Thread(target=target, args=(arg,), daemon=True)
        self._thread.start()

    def _serve_fd(self, fd: int) -> None:
        while select.select([fd, self._stop_r], [], [])[0] != [self._stop_r]:
            try:
                data = os.read(fd, 4096)
            except OSError:   # (nobody has the port open)
                continue
            reply = self._reply(data)
            if reply:
                os.write(fd, reply)

    def _serve_tcp(self, server: socket.socket) -> None:
        with server:
            while select.select([server, self._stop_r], [], [])[0] != [self._stop_r]:
                conn, _ = server.accept()
                with conn:
                    while select.select([conn, self._stop_r], [], [])[0] != [self._stop_r]:
                        data = conn.recv(4096)
                        if not data:
                            break
                        reply = self._reply(data)
                        if reply:
                            conn.sendall(reply)

    def stop(self) -> None:
        os.write(self._stop_w, b"x")
        if self._thread is not None:
            self._thread.join(30)
        for fd in self._fds + [self._stop_r, self._stop_w]:
            os.close(fd)
        if self.link is not None and self.link.is_symlink():
            self.link.unlink()
