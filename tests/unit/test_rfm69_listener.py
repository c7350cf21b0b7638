"""The rfm69 listener on a running event loop, against the register-level chip model.

The listener is built from a config file as the daemon builds it; only the spidev device and the
gpiod module are replaced (by the chip model and the fake libgpiod). Packets arrive as OEM nodes
send them, through the model's air interface, and the frames the listener emits are decoded by
the node decoder as the gateway decodes them.
"""

import logging
import queue
import threading

import pytest

from buffers import BUFFERS
from gateway.config import ConfigError, ConfigLoader
from gateway.eventloop import EventLoop
from gateway.nodes import NodeDecoder
from listeners import LISTENERS
from listeners.rfm69 import Rfm69Listener
from tests.support.daemon import WAIT
from tests.support.fake_gpiod import FakeGpiod
from tests.support.rfm69_chip import JEELIB_434, LPL_433, LPL_433_92, Air, Rfm69Chip
from tests.support.rfm69_packets import EMONTX4_NODES, emontx4_payload, jeelib, lpl

CHIP = "/dev/gpiochip0"


def load(tmp_path, listener: str, nodes: str = EMONTX4_NODES):
    path = tmp_path / "oemgateway.conf"
    path.write_text(f"[listeners]\n[[radio]]\ntype = rfm69\n{listener}\n{nodes}")
    return ConfigLoader(LISTENERS, BUFFERS).load(str(path))


class Running:
    """A listener on an event loop thread; its decoded frames arrive on ``frames``."""

    def __init__(self, tmp_path, listener="", nodes=EMONTX4_NODES, wiring=None, edges=True,
                 chip_options=None):
        config = load(tmp_path, "gpio_chip = " + CHIP + "\n" + listener, nodes)
        plugin = config.listeners["radio"]
        self.gpio = FakeGpiod()
        gpio_chip = self.gpio.add_chip(CHIP)
        if not edges:
            gpio_chip.refuse_edges = OSError(16, "Device or resource busy")
        settings = Rfm69Listener.radio_settings_of(plugin.settings)
        pins = settings.pins
        self.chip = Rfm69Chip(self.gpio, CHIP, dio0=pins.irq, reset=pins.reset, cs=pins.cs,
                              spi=(settings.spi_bus, settings.spi_device))
        for name, value in (chip_options or {}).items():
            setattr(self.chip, name, value)
        self.loop = EventLoop()
        self.decoder = NodeDecoder(config.nodes)
        self.frames: "queue.Queue" = queue.Queue()
        self.listener = plugin.cls("radio", plugin.settings, self.loop, self._dispatch, nodes=self.decoder,
                                   spi=self.chip.spidev(), gpiod=self.gpio)
        self.listener.radio.mode_timeout = 0.05
        self.thread = threading.Thread(target=self.loop.run)

    def _dispatch(self, item):
        frame = self.decoder.decode(item)
        if frame is not None:
            self.frames.put(frame)

    def __enter__(self):
        self.loop.call_soon_threadsafe(self.listener.open)
        self.thread.start()
        self.wait(lambda: self.listener.state == "open" and self.chip.mode == 4)
        return self

    def __exit__(self, *exc):
        done = threading.Event()
        self.loop.call_soon_threadsafe(lambda: (self.listener.close(), done.set()))
        done.wait(WAIT)
        self.loop.stop()
        self.thread.join(WAIT)
        self.loop.close()

    def wait(self, predicate, timeout=WAIT):
        """Wait until ``predicate()`` holds, checked whenever the driver reads the chip's flags."""
        assert self.chip.wait_for(predicate, timeout), "the condition never held"

    def listening(self) -> bool:
        chip = self.chip
        return chip.mode == 4 and chip.mode_ready and not chip.payload_ready and not chip.fifo

    def send(self, data: bytes, **options) -> None:
        """A node sends ``data`` once the radio listens again (after its last packet and ACK)."""
        self.wait(self.listening)
        assert self.chip.inject(data, **options), self.chip.dropped[-1:]

    def frame(self):
        return self.frames.get(timeout=WAIT)

    def on_loop(self, fn):
        box = queue.Queue()
        self.loop.call_soon_threadsafe(lambda: box.put(fn()))
        return box.get(timeout=WAIT)


def test_emontx4_packets_are_received_acked_decoded_with_rssi(tmp_path):
    with Running(tmp_path, "frequency = 49\nboard = emonpi2") as run:
        assert run.chip.inject(lpl(5, 17, emontx4_payload(msg=1), ctl=0x40), rssi_dbm=-61, air=LPL_433_92)
        frame = run.frame()
        values = frame.named_values()
        assert frame.node == "emonTx4_17" and frame.source == "radio"
        assert (values["MSG"], values["Vrms"], values["P4"], values["T1"], values["rssi"]) == (1, 240.12, 2400, 21.5, -61)
        run.wait(lambda: len(run.chip.transmitted) == 1)
        assert run.chip.transmitted[0].data == bytes([3, 17, 5, 0x80])      # the node's ACK
        assert run.listener.stats.frames_good == 1
        status = run.on_loop(run.listener.status_details)["devices"]["/dev/spidev0.0"]
        assert status["state"] == "open" and status["interrupt"] == "edge events"
        assert (status["received"], status["acks_sent"]) == (1, 1)


def test_retransmissions_are_dropped_and_gaps_counted(tmp_path):
    with Running(tmp_path) as run:
        for msg in (10, 10, 12):       # 10 sent again (the ACK was lost), 11 never arrived
            run.send(lpl(5, 17, emontx4_payload(msg=msg), ctl=0x40), air=LPL_433)
        assert [run.frame().values[0] for _ in range(2)] == [10, 12]
        assert run.listener.radio.counters.duplicates == 1
        assert run.on_loop(lambda: run.decoder.snapshot()["17"]["missed"]) == 1


def test_the_msg_counter_tells_a_retry_from_a_new_reading_with_the_same_values(tmp_path):
    """Without [nodes] MSG the payload decides; with it, the counter (two packets that differ
    only in the counter are both kept; the same counter twice is a retry)."""
    with Running(tmp_path) as run:
        payload = emontx4_payload(msg=7)
        changed = payload[:4] + bytes([payload[4] ^ 1]) + payload[5:]   # another Vrms, same MSG
        for data in (payload, changed):
            run.send(lpl(5, 17, data), air=LPL_433)
        assert run.frame().values[0] == 7
        run.wait(lambda: run.listener.radio.counters.duplicates == 1)
        assert run.frames.empty()


def test_bad_packets_are_counted_and_the_next_good_one_arrives(tmp_path):
    with Running(tmp_path, "crc_errors = true") as run:
        assert run.chip.inject_raw(bytes([70]) + bytes(65))                      # length byte > FIFO
        run.wait(lambda: run.listener.radio.counters.bad_length == 1)
        run.wait(run.listening)
        assert run.chip.inject_raw(bytes([2, 5, 17]))                             # shorter than the header
        run.wait(lambda: run.listener.radio.counters.bad_length == 2)
        run.send(lpl(5, 17, emontx4_payload(msg=3)), air=LPL_433, crc_ok=False)
        run.wait(lambda: run.listener.radio.counters.bad_crc == 1)
        assert not run.chip.inject(lpl(5, 17, emontx4_payload(msg=4)),
                                   air=Air(frf=LPL_433.frf, bitrate=LPL_433.bitrate, sync=b"\x2d\x64",
                                           key=LPL_433.key))                  # network 100
        assert run.chip.dropped[-1][0] == "network"
        run.send(lpl(5, 17, emontx4_payload(msg=5)), air=LPL_433)
        assert run.frame().values[0] == 5
        assert run.on_loop(lambda: run.listener.stats.frames_bad) == 3
        assert run.on_loop(lambda: run.listener.stats.frames_good) == 1


def test_jeelib_format_group_parity_and_node_ids(tmp_path):
    with Running(tmp_path, "radio_format = jeelib\nnodeid = 63\ngroup = 210", nodes="") as run:
        assert run.chip.inject(jeelib(0, 10, b"\x01\x00\x02\x00"), air=JEELIB_434)
        frame = run.frame()
        assert (frame.node, frame.values) == (10, (1, 2))
        run.send(jeelib(0, 11, b"\x01\x00", group=1), air=JEELIB_434)   # sync matched, parity not
        run.wait(lambda: run.listener.radio.counters.wrong_network == 1)
        run.send(jeelib(0, 12, b"\x05\x00"), air=JEELIB_434)
        assert run.frame().node == 12


def test_without_edge_events_the_radio_is_polled(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    with Running(tmp_path, "poll_interval = 0.01", edges=False) as run:
        assert run.listener.radio.polling
        assert run.chip.inject(lpl(5, 17, emontx4_payload(msg=9)), air=LPL_433)
        assert run.frame().values[0] == 9
        assert run.on_loop(run.listener.status_details)["devices"]["/dev/spidev0.0"]["interrupt"] == "polling"
    assert any("polling every 10 ms" in r.getMessage() and "holds the line" in r.getMessage()
               for r in caplog.records)


def test_watchdog_reinitialises_a_radio_that_went_deaf(tmp_path):
    with Running(tmp_path, "watchdog = 0.3\nwatchdog_from_start = true") as run:
        with run.chip._lock:
            run.chip._power_on()          # a brown-out: its registers are back to reset values
        assert not run.chip.inject(lpl(5, 17, emontx4_payload(msg=1)), air=LPL_433)
        run.wait(lambda: run.listener.watchdog_resets >= 1 and run.chip.mode == 4)
        assert run.chip.inject(lpl(5, 17, emontx4_payload(msg=2)), air=LPL_433)
        assert run.frame().values[0] == 2
        assert run.listener.radio.counters.initialised >= 2


def test_a_radio_that_stops_answering_is_reopened_when_it_answers_again(tmp_path, caplog):
    with Running(tmp_path) as run:
        run.chip.dead = True              # mode changes never complete
        run.chip.absent = True            # and nothing answers on the bus
        run.chip.inject_raw(b"")          # (no packet: it is not there)
        run.loop.call_soon_threadsafe(lambda: run.listener.transmit([1, 2, 3]))
        run.wait(lambda: run.listener.state == "failed")
        assert "no RFM69 answers" in run.on_loop(run.listener.status_details)["devices"]["/dev/spidev0.0"]["last_error"]
        run.chip.dead = run.chip.absent = False
        run.wait(lambda: run.listener.state == "open" and run.chip.mode == 4)
        assert run.chip.inject(lpl(5, 17, emontx4_payload(msg=3)), air=LPL_433)
        assert run.frame().values[0] == 3
    messages = [r.getMessage() for r in caplog.records]
    assert any("initialising the radio again" in m or "reopening it" in m for m in messages)


def test_transmit_paths_send_through_the_radio(tmp_path):
    with Running(tmp_path) as run:
        results = []
        run.loop.call_soon_threadsafe(lambda: results.append(run.listener.send_frame(20, [-1, 65535])))
        run.loop.call_soon_threadsafe(lambda: results.append(run.listener.transmit([1, 2], dest=17)))
        run.wait(lambda: len(run.chip.transmitted) == 2)
        assert [s.data for s in run.chip.transmitted] == [bytes([7, 255, 5, 0, 20, 255, 255, 255]),
                                                          bytes([5, 17, 5, 0, 1, 2])]
        assert run.chip.transmitted[0].air == LPL_433 and results == [True, True]
        assert "does not fit datacode H" in str(run.on_loop(lambda: _raises(run.listener.send_frame, 20, [1, -1])))
        assert "a packet carries 1 to 61 bytes" in str(run.on_loop(lambda: _raises(run.listener.transmit, [1] * 62)))


def test_a_packet_queued_before_the_radio_is_open_waits_for_it(tmp_path, caplog):
    """The emonGLCD time is queued as the listener opens, before the receiver thread has opened
    the radio: it is sent once the radio is open, not lost. The receiver is held until the
    sender has dealt with the packet (dropped it, or said it waits), so the order is forced."""
    caplog.set_level(logging.DEBUG, logger="oemgateway")
    dealt_with = threading.Event()

    class SenderDealtWith(logging.Handler):
        def emit(self, record):
            if "radio packet for node" in record.getMessage():
                dealt_with.set()

    watcher = SenderDealtWith()
    logging.getLogger("oemgateway").addHandler(watcher)
    try:
        run = Running(tmp_path, "sendtimeinterval = 3600")
        radio_open = run.listener.radio.open

        def open_once_the_sender_has_the_packet():
            dealt_with.wait(WAIT)
            radio_open()

        run.listener.radio.open = open_once_the_sender_has_the_packet
        with run:
            assert dealt_with.is_set()
            assert run.listener.tx_dropped == 0
            run.wait(lambda: len(run.chip.transmitted) == 1)
            assert run.chip.transmitted[0].data[:5] == bytes([7, 255, 5, 0, 0])   # [0, hour, minute, 0] to all
    finally:
        logging.getLogger("oemgateway").removeHandler(watcher)


def _raises(fn, *args):
    try:
        fn(*args)
    except ValueError as exc:
        return exc
    return None


def test_settings_are_checked_naming_the_key(tmp_path):
    for text, words in (("nodeid = 70\nradio_format = jeelib", "nodeid = 70 is out of range (1-63)"),
                        ("frequency = 500.5e3", "frequency"),
                        ("encryption_key = short", "encryption_key must be 16 characters"),
                        ("irq_pin = x", "irq_pin = x: expected a pin number"),
                        ("pin_numbering = header\nirq_pin = 6", "irq_pin = 6: header pin 6 is ground"),
                        ("cs_pin = 25", "two radio pins share one GPIO line")):
        with pytest.raises(ConfigError) as raised:
            load(tmp_path, text)
        message = str(raised.value)
        assert words in message and "oemgateway.conf" in message and "radio" in message, message


def test_emonhub_header_pins_and_board_defaults(tmp_path):
    settings = load(tmp_path, "board = emonpi2").listeners["radio"].settings
    assert Rfm69Listener.radio_settings_of(settings).pins.reset == 8
    settings = load(tmp_path, "pin_numbering = header\nirq_pin = 22\ncs_pin = 16\nreset_pin = 24")\
        .listeners["radio"].settings
    pins = Rfm69Listener.radio_settings_of(settings).pins
    assert (pins.irq, pins.cs, pins.reset) == (25, 23, 8)
    settings = load(tmp_path, "cs_pin = none\nencryption_key = none").listeners["radio"].settings
    radio = Rfm69Listener.radio_settings_of(settings)
    assert radio.pins.cs is None and radio.aes_key is None


@pytest.mark.parametrize("pins, missing, words", [
    ("", {"spidev", "gpiod"}, "the spidev and gpiod packages are not installed: pip install 'oemgateway[radio]' "
                             "(or: pip install spidev gpiod>=2)"),
    ("", {"spidev"}, "the spidev package is not installed"),
    ("cs_pin = none\nirq_pin = none", {"spidev", "gpiod"}, "the spidev package is not installed"),
])
def test_without_the_radio_packages_the_listener_says_what_to_install(tmp_path, monkeypatch, pins, missing, words):
    import importlib.util
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in missing else object())
    config = load(tmp_path, pins)
    plugin = config.listeners["radio"]
    loop = EventLoop()
    listener = plugin.cls("radio", plugin.settings, loop, lambda item: None)
    assert not listener._open_radio()
    assert words in listener.problem and listener.state == "failed"
    loop.close()


def test_the_encryption_key_is_a_secret(tmp_path):
    config = load(tmp_path, "encryption_key = my-own-key-1234x")
    assert "my-own-key-1234x" in config.secrets()
    assert config.masked()["listeners"]["radio"]["encryption_key"] == "***"
    assert "my-own-key-1234x" not in repr(Rfm69Listener.radio_settings_of(config.listeners["radio"].settings))
