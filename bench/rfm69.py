"""What the RFM69 radio listener costs: ``python -m bench.rfm69 [--quick]``.

The listener runs as in the daemon (a receiver thread, a sender thread, the event loop on its
own thread, the node decoder behind it) against the register-level chip model of the tests
(``tests/rfm69_chip.py``) and the fake libgpiod (``tests/fake_gpiod.py``). The CPU time of the
listener's threads and of the loop thread is read per thread (``psutil``), so the bench's own
thread, which plays the nodes, is not counted.

* idle: no packet for ``--idle`` seconds: CPU % of one core and reads of RegIrqFlags2 per
  second (the receiver's wake-ups), with DIO0 edge events and when polling (no edge events,
  ``poll_interval`` 0.02 s);
* per packet: ``--packets`` emonTx4 packets (52 bytes, ACK requested, as the firmware sends
  them): CPU microseconds per packet, receive + ACK + hand-off + decoding per [nodes].

The model answers each SPI transfer in Python where a Pi makes an ioctl; its share is inside
the figures, which are therefore an upper bound of the listener's own cost on this machine.
"""

import argparse
import json
import queue
import threading
import time
import tempfile
from pathlib import Path

import psutil

from buffers import BUFFERS
from gateway.config import ConfigLoader
from gateway.eventloop import EventLoop
from gateway.nodes import NodeDecoder
from listeners import LISTENERS
from tests.support.fake_gpiod import FakeGpiod
from tests.support.rfm69_chip import LPL_433, RX, Rfm69Chip
from tests.support.rfm69_packets import EMONTX4_NODES, emontx4_payload, lpl

CHIP = "/dev/gpiochip0"


class Bench:
    def __init__(self, folder: Path, edges: bool):
        path = folder / "oemgateway.conf"
        path.write_text(f"[listeners]\n[[radio]]\ntype = rfm69\nboard = emonpi2\ngpio_chip = {CHIP}\n"
                        f"{EMONTX4_NODES}")
        config = ConfigLoader(LISTENERS, BUFFERS).load(str(path))
        plugin = config.listeners["radio"]
        self.gpio = FakeGpiod()
        gpio_chip = self.gpio.add_chip(CHIP)
        if not edges:
            gpio_chip.refuse_edges = OSError(16, "Device or resource busy")
        self.chip = Rfm69Chip(self.gpio, CHIP, dio0=25, reset=8, cs=23)
        self.loop = EventLoop()
        self.decoder = NodeDecoder(config.nodes)
        self.frames: "queue.Queue" = queue.Queue()
        self.listener = plugin.cls("radio", plugin.settings, self.loop, self._dispatch, nodes=self.decoder,
                                   spi=self.chip.spidev(), gpiod=self.gpio)
        self.thread = threading.Thread(target=self.loop.run, name="loop")

    def _dispatch(self, item):
        frame = self.decoder.decode(item)
        if frame is not None:
            self.frames.put(frame)

    def __enter__(self):
        self.thread.start()
        self.loop.call_soon_threadsafe(self.listener.open)
        assert self.chip.wait_for(self._listening, 30)
        return self

    def __exit__(self, *exc):
        done = threading.Event()
        self.loop.call_soon_threadsafe(lambda: (self.listener.close(), done.set()))
        done.wait(30)
        self.loop.stop()
        self.thread.join(30)
        self.loop.close()

    def _listening(self) -> bool:
        chip = self.chip
        return chip.mode == RX and chip.mode_ready and not chip.payload_ready and not chip.fifo \
            and chip.regs[0x37] != 0x10

    def cpu(self) -> float:
        """CPU seconds so far of the loop thread and the listener's threads."""
        ids = {self.thread.native_id} | {t.native_id for t in self.listener._threads}
        return sum(t.user_time + t.system_time for t in psutil.Process().threads() if t.id in ids)

    def idle(self, seconds: float):
        """``(CPU % of one core, reads of the chip's flags per second)`` with no packet."""
        time.sleep(1.0)             # settle
        before, reads, start = self.cpu(), self.chip.flag_reads, time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - start
        return 100.0 * (self.cpu() - before) / elapsed, (self.chip.flag_reads - reads) / elapsed

    def packets(self, count: int) -> float:
        before = self.cpu()
        for msg in range(count):
            assert self.chip.wait_for(self._listening, 30)
            assert self.chip.inject(lpl(5, 17, emontx4_payload(msg=msg), ctl=0x40), -60, LPL_433)
            self.frames.get(timeout=30)
        assert self.chip.wait_for(self._listening, 30)
        return 1e6 * (self.cpu() - before) / count


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 s idle, 500 packets")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle measurement (30)")
    parser.add_argument("--packets", type=int, default=5000, help="packets received (5000)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.idle, args.packets = 5.0, 500
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for edges in (True, False):
            mode = "edge events" if edges else "polling"
            with Bench(Path(folder), edges) as bench:
                cpu, reads = bench.idle(args.idle)
                results[f"idle CPU % ({mode})"] = round(cpu, 4)
                results[f"idle chip reads/s ({mode})"] = round(reads, 2)
                results[f"CPU us per packet ({mode})"] = round(bench.packets(args.packets), 1)
                results[f"packets received ({mode})"] = bench.listener.radio.counters.received
                results[f"ACKs sent ({mode})"] = bench.listener.radio.counters.acks_sent
    for name, value in results.items():
        print(f"{name:<34} {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
