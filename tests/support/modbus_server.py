"""A real pymodbus server for the Modbus listener's tests: Modbus TCP on a free port, or Modbus
RTU on a pseudo-terminal whose other end the listener opens, through a relay that plays the
RS-485 line (several meters on it, and noise when a test asks for it).

``SimulatedMeter(unit, input={72: 1234.5}, holding=...)`` is one meter: float32 values by
address (or lists of raw words), the rest of its range zeros; an address beyond its highest is
refused with exception 2 (illegal data address), as real meters do. ``silent`` units never
answer; ``garble`` is how many of the next answers to damage (a flipped CRC byte after a burst
of garbage bytes), so the listener sees garbage on the line. ``answered`` holds the monotonic
time of every answer sent (the benchmarks time a reading from it).
"""

import asyncio
import os
import selectors
import threading
import time
import tty
from collections import Counter
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Union

from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from protocols.modbus_registers import encode_raw
from tests.support.daemon import WAIT, free_port

Value = Union[float, List[int]]
NOISE = b"\x00\xff\x13garbage\xfe"
# An Eastron SDM120's input registers as one answers: 230.5 V, 6.5 A, 1498.25 W ... 1234.5 kWh.
SDM120_REGISTERS = {0: 230.5, 6: 6.5, 12: 1498.25, 18: 1500.0, 30: 0.998, 70: 50.0, 72: 1234.5, 74: 0.25, 76: 12.0}


class SimulatedMeter:
    def __init__(self, unit: int, input: Optional[Dict[int, Value]] = None,
                 holding: Optional[Dict[int, Value]] = None):
        self.unit = unit
        self.input = dict(input or {})
        self.holding = dict(holding or {})

    @staticmethod
    def _block(values: Dict[int, Value]) -> List[SimData]:
        words: Dict[int, int] = {}
        for address, value in values.items():
            raw = value if isinstance(value, list) else encode_raw(value, "float32")
            words.update({address + i: w for i, w in enumerate(raw)})
        size = max(words, default=0) + 1
        return [SimData(0, values=[words.get(a, 0) for a in range(size)], datatype=DataType.REGISTERS)]

    def device(self) -> SimDevice:
        bits = [SimData(0, values=[False], datatype=DataType.BITS)]
        return SimDevice(self.unit, simdata=(bits, bits, self._block(self.holding), self._block(self.input)))


class ModbusServer:
    """The meters behind one pymodbus server, run on an asyncio loop of its own thread."""

    def __init__(self, meters: Iterable[SimulatedMeter]):
        self.meters = list(meters)
        self.silent: set = set()
        self.garble = 0
        self.requests: Counter = Counter()      # requests seen, by unit
        self.answered: List[float] = []          # time.monotonic() of each answer sent
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server = None
        self._unit_at = 0                        # where a frame holds its unit id (RTU 0, TCP 6)
        self._line: Optional["RS485Line"] = None
        self._lock = threading.Lock()

    # -- starting ------------------------------------------------------------------------------------
    def start_tcp(self) -> int:
        """Serve Modbus TCP on 127.0.0.1; the port."""
        port = free_port()
        self._unit_at = 6
        self._start(lambda: ModbusTcpServer([m.device() for m in self.meters], address=("127.0.0.1", port),
                                            trace_packet=self._trace))
        return port

    def start_rtu(self, link: Path, baud: int = 9600) -> Path:
        """Serve Modbus RTU on a line whose other end is the device ``link`` (a symlink)."""
        self._line = RS485Line(link)
        self._start(lambda: ModbusSerialServer([m.device() for m in self.meters], port=self._line.server_path,
                                               baudrate=baud, trace_packet=self._trace))
        return link

    def _start(self, make) -> None:
        self._thread.start()
        ready = asyncio.run_coroutine_threadsafe(self._serve(make), self._loop)
        ready.result(WAIT)

    async def _serve(self, make) -> None:
        self._server = make()
        await self._server.serve_forever(background=True)

    def stop(self) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop).result(WAIT)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(WAIT)
        if self._line is not None:
            self._line.close()

    # -- what goes over the line ---------------------------------------------------------------------
    def _trace(self, sending: bool, data: bytes) -> bytes:
        if len(data) <= self._unit_at:
            return data
        unit = data[self._unit_at]
        with self._lock:
            if not sending:
                self.requests[unit] += 1
                return data
            if unit in self.silent:
                return b""
            if self.garble:
                self.garble -= 1
                return NOISE + data[:-1] + bytes([data[-1] ^ 0xFF])
            self.answered.append(time.monotonic())
        return data


class RS485Line:
    """Two pseudo-terminals joined by a thread: the listener opens ``link``, the server the other."""

    def __init__(self, link: Path):
        self.link = Path(link)
        self._client_master, client_slave = self._pty()
        self._server_master, server_slave = self._pty()
        self._slaves = (client_slave, server_slave)
        self.server_path = os.ttyname(server_slave)
        os.symlink(os.ttyname(client_slave), self.link)
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._relay, daemon=True)
        self._thread.start()

    @staticmethod
    def _pty():
        master, slave = os.openpty()
        tty.setraw(slave)   # no echo, no line editing, before anyone opens it
        return master, slave

    def _relay(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._client_master, selectors.EVENT_READ, self._server_master)
            selector.register(self._server_master, selectors.EVENT_READ, self._client_master)
            selector.register(self._stop_r, selectors.EVENT_READ, None)
            while True:
                for key, _ in selector.select():
                    if key.data is None:
                        return
                    try:
                        os.write(key.data, os.read(key.fd, 4096))
                    except OSError:   # (the other end closed for a moment: the bytes are lost, as on a wire)
                        pass

    def close(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(WAIT)
        for fd in (self._client_master, self._server_master, *self._slaves, self._stop_r, self._stop_w):
            os.close(fd)
        if self.link.is_symlink():
            self.link.unlink()
