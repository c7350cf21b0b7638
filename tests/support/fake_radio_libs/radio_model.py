"""One RFM69 chip model behind the stand-in ``spidev`` and ``gpiod`` modules of this folder.

Made when either module is first imported by the daemon, wired as ``OEMGW_FAKE_RADIO_PINS``
says (``irq,cs,reset`` BCM numbers, ``none`` for not wired; default the emonPi2's 25,23,8). A
test reaches it through the Unix socket ``OEMGW_FAKE_RADIO`` names, one command per line, one
answer line each:

``listen``                  waits until the radio receives (configured, in RX, FIFO empty): ``ok``
``send HEX RSSI BAND``      a node sends FIFO bytes HEX (length first) at RSSI dBm on band 43 or
                            49 (network 210, OEM's key): ``ok`` or ``dropped REASON``
``sent [N]``                the packets the radio transmitted (once there are N), as HEX words:
                            ``sent HEX HEX ...``

With ``OEMGATEWAY_TEST_GPIOD`` set, the chip's other input lines are driven through that socket
as with ``gpiod_env`` (``tests.support.gpiod_control.RemoteChip``): digital inputs and pulses
beside the radio.
"""

import os
import socket
import threading

from tests.support.fake_gpiod import FakeGpiod
from tests.support.gpiod_control import serve_pins
from tests.support.rfm69_chip import LPL_433, LPL_433_92, RX, Rfm69Chip

AIRS = {"43": LPL_433, "49": LPL_433_92}


def _pins():
    text = os.environ.get("OEMGW_FAKE_RADIO_PINS", "25,23,8")
    return [None if p == "none" else int(p) for p in text.split(",")]


GPIO = FakeGpiod()
_HEADER = GPIO.add_chip("/dev/gpiochip0", label="pinctrl-bcm2711")
_irq, _cs, _reset = _pins()
CHIP = Rfm69Chip(GPIO, "/dev/gpiochip0", dio0=_irq, reset=_reset, cs=_cs)


def _listening() -> bool:
    return CHIP.mode == RX and CHIP.mode_ready and not CHIP.payload_ready and not CHIP.fifo \
        and CHIP.regs[0x37] != 0x10     # configured (RegPacketConfig1 is not its reset value)


def _answer(command: str) -> str:
    words = command.split()
    if words[:1] == ["listen"]:
        return "ok" if CHIP.wait_for(_listening, 30) else "not listening"
    if words[:1] == ["send"] and len(words) == 4:
        if CHIP.inject(bytes.fromhex(words[1]), float(words[2]), AIRS[words[3]]):
            return "ok"
        return "dropped " + CHIP.dropped[-1][0]
    if words[:1] == ["sent"]:
        if len(words) == 2:
            CHIP.wait_for(lambda: len(CHIP.transmitted) >= int(words[1]), 30)
        return " ".join(["sent"] + [s.data.hex() for s in CHIP.transmitted])
    return "unknown command"


def _serve(path: str) -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    while True:
        connection, _ = server.accept()
        with connection, connection.makefile("rw") as stream:
            for line in stream:
                stream.write(_answer(line.strip()) + "\n")
                stream.flush()


if os.environ.get("OEMGW_FAKE_RADIO"):
    threading.Thread(target=_serve, args=(os.environ["OEMGW_FAKE_RADIO"],), daemon=True).start()
if os.environ.get("OEMGATEWAY_TEST_GPIOD"):
    serve_pins(_HEADER, os.environ["OEMGATEWAY_TEST_GPIOD"])
