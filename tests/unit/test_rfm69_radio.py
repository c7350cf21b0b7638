"""The RFM69 SPI radio driver against a register-level model of the chip and a fake libgpiod.

Packets are built as OEM firmware sends them (emonTx4 ``emon_CM_6CT_temperature``: 52 bytes to
base node 5 with an ACK requested) and arrive through the model as over the air.
"""

import errno
import queue
import struct
import sys
import threading

import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from gateway.frame import RawFrame
from gateway.nodes import NodeDecoder, NodeTable
from protocols import rfm69_radio
from protocols.rfm69_radio import (BAD_CRC, BAD_LENGTH, BOARD_PINS, WRONG_NETWORK, BadPacket,
                                   DuplicateFilter, JeeLibNative, LowPowerLab, Packet, Pins,
                                   RadioError, RadioNotFound, RadioNotResponding, RadioSettings,
                                   Rfm69Radio, Watchdog, bcm_of_header_pin, find_header_chip,
                                   frf_for, message_counter)
from tests.support.fake_gpiod import FakeGpiod
from tests.support.rfm69_packets import emontx4_payload, jeelib, lpl
from tests.support.rfm69_chip import (JEELIB_434, LPL_433, LPL_433_92, OEM_KEY, RX, SLEEP, Air, Rfm69Chip,
                              garbled)

CHIP = "/dev/gpiochip0"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def gpio():
    fake = FakeGpiod()
    fake.add_chip(CHIP, label="pinctrl-bcm2711")
    return fake


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def make(gpio, clock):
    """``make(settings)`` -> (radio, chip): a chip wired as ``settings.pins`` say, and its driver."""
    radios = []

    def factory(settings=None, open=True, chip_options=None, **radio_options):
        settings = settings or RadioSettings.lpl(pins=BOARD_PINS["emonpi2"], gpio_chip=CHIP)
        pins = settings.pins
        chip = Rfm69Chip(gpio, CHIP, dio0=pins.irq, reset=pins.reset, cs=pins.cs,
                         spi=(settings.spi_bus, settings.spi_device))
        for name, value in (chip_options or {}).items():
            setattr(chip, name, value)
        radio_options.setdefault("duplicates", DuplicateFilter(clock=clock))
        radio_options.setdefault("mode_timeout", 0.05)
        radio = Rfm69Radio(settings, spi=chip.spidev(), gpiod=gpio, **radio_options)
        radios.append(radio)
        if open:
            radio.open()
        return radio, chip

    yield factory
    for radio in radios:
        radio.close()


EMONTX4_NODE = {"17": {"nodename": "emonTx4_17",
                       "names": ["MSG", "Vrms", "P1", "P2", "P3", "P4", "P5", "P6", "E1", "E2", "E3",
                                 "E4", "E5", "E6", "T1", "T2", "T3", "pulse"],
                       "datacodes": ["L", "h"] + ["h"] * 6 + ["l"] * 6 + ["h"] * 3 + ["L"],
                       "scales": [1, 0.01] + [1] * 12 + [0.01] * 3 + [1]}}


# -- configuration ------------------------------------------------------------------------------
LPL_REGISTERS = {0x02: 0x00, 0x03: 0x02, 0x04: 0x40, 0x05: 0x03, 0x06: 0x33, 0x13: 0x1A, 0x19: 0x42,
                 0x25: 0x40, 0x29: 220, 0x2E: 0x88, 0x2F: 0x2D, 0x30: 210, 0x37: 0x90, 0x38: 66,
                 0x3C: 0x8F, 0x3D: 0x13, 0x6F: 0x30, 0x11: 0x96}


@pytest.mark.parametrize("band, frf", [(43, b"\x6c\x40\x00"), (49, b"\x6c\x7a\xe1"), (86, b"\xd9\x00\x00"),
                                       (91, b"\xe4\xc0\x00"), (31, b"\x4e\xc0\x00")])
def test_lpl_init_writes_emonhubs_registers_for_each_band(make, band, frf):
    radio, chip = make(RadioSettings.lpl(frequency=band, pins=BOARD_PINS["emonpi2"], gpio_chip=CHIP))
    assert {a: chip.regs[a] for a in LPL_REGISTERS} == LPL_REGISTERS
    assert bytes(chip.regs[0x07:0x0A]) == frf
    assert chip.aes_key == OEM_KEY                     # RegAesKey1-16, then PacketConfig2 bit 0
    assert chip.mode == RX and radio.version == 0x24
    assert radio.counters.initialised == 1


def test_lpl_network_power_and_no_encryption(make):
    radio, chip = make(RadioSettings.lpl(network=100, aes_key=None, tx_power_dbm=13,
                                         pins=BOARD_PINS["emonpi2"], gpio_chip=CHIP))
    assert chip.regs[0x30] == 100 and chip.regs[0x3D] == 0x12 and chip.aes_key is None
    assert chip.regs[0x11] == 0x80 | 31                # PA0, +13 dBm
    assert bytes(chip.regs[0x3E:0x4E]) == bytes(16)    # no key written


JEELIB_REGISTERS = {0x02: 0x00, 0x03: 0x02, 0x04: 0x8A, 0x05: 0x05, 0x06: 0xC3, 0x07: 0x6C, 0x08: 0x80,
                    0x09: 0x00, 0x0B: 0x20, 0x11: 0x99, 0x19: 0x42, 0x1E: 0x2C, 0x25: 0x40, 0x26: 0x07,
                    0x29: 0xA0, 0x2D: 0x05, 0x2E: 0x88, 0x2F: 0x2D, 0x30: 212, 0x37: 0xD0, 0x38: 0x42,
                    0x3C: 0x8F, 0x3D: 0x12, 0x6F: 0x20, 0x71: 0x02}


def test_jeelib_init_writes_group_whitening_and_bitrate(make):
    radio, chip = make(RadioSettings.jeelib(node_id=15, network=212, gpio_chip=CHIP))
    assert {a: chip.regs[a] for a in JEELIB_REGISTERS} == JEELIB_REGISTERS
    assert chip.air() == Air(frf=0x6C8000, bitrate=0x028A, sync=bytes([0x2D, 212]), whitening=True)
    assert radio.format.group_parity == JeeLibNative.parity(212)


def test_reset_pulse_restores_the_chip_before_it_is_configured(make):
    radio, chip = make(open=False)
    chip.regs[0x30] = 0x77
    chip.mode, chip.payload_ready = RX, True           # a wedged chip, left as it was
    radio.open()
    assert chip.regs[0x30] == 210 and chip.mode == RX and not chip.payload_ready
    assert chip.resets == 1


def test_the_chip_select_line_is_driven_by_hand(make, gpio):
    radio, chip = make(RadioSettings.lpl(pins=BOARD_PINS["emonbase"], gpio_chip=CHIP))
    assert radio.bus.spi.no_cs and radio.bus.spi.max_speed_hz == 4_000_000 and radio.bus.spi.mode == 0
    assert gpio.chips[CHIP].level(7)                    # deselected (high) between transfers
    assert chip.mode == RX


def test_the_spi_devices_own_chip_select(make):
    settings = RadioSettings.lpl(pins=Pins(irq=25, cs=None, reset=None), spi_device=1, gpio_chip=CHIP)
    radio, chip = make(settings)
    assert not radio.bus.spi.no_cs and chip.mode == RX


def test_no_radio_on_the_bus_is_a_clear_error_and_releases_everything(make, gpio):
    radio, chip = make(open=False, chip_options={"absent": True})
    with pytest.raises(RadioNotFound, match=r"no RFM69 answers on /dev/spidev0\.0 with chip select GPIO23"):
        radio.open()
    assert gpio.chips[CHIP].owners == {} and radio.bus.spi.address is None


def test_chip_select_on_the_wrong_wire_finds_no_radio(make, gpio):
    # The radio's NSS is on GPIO23, but the settings say the SPI device's own chip select.
    chip = Rfm69Chip(gpio, CHIP, dio0=25, cs=23)
    radio = Rfm69Radio(RadioSettings.lpl(pins=Pins(irq=25, cs=None), gpio_chip=CHIP), spi=chip.spidev(),
                       gpiod=gpio)
    with pytest.raises(RadioNotFound, match="the SPI device's chip select"):
        radio.open()


def test_a_register_that_does_not_keep_its_value_is_reported(make, gpio):
    radio, chip = make(open=False, chip_options={"ignored_writes": {0x30}})
    with pytest.raises(RadioError, match="register 0x30 reads 0x01 after 0xD2 was written: the SPI link"):
        radio.open()
    assert gpio.chips[CHIP].owners == {}


# -- receiving -----------------------------------------------------------------------------------
def test_emontx4_packet_is_received_with_rssi_and_acknowledged(make):
    radio, chip = make(RadioSettings.lpl(frequency=49, pins=BOARD_PINS["emonpi2"], gpio_chip=CHIP))
    payload = emontx4_payload()
    assert chip.inject(lpl(5, 17, payload, ctl=0x40), rssi_dbm=-42.5, air=LPL_433_92)
    packet = radio.receive(timeout=1)
    assert packet == Packet(sender=17, target=5, payload=payload, rssi=-43, flags=0x40,
                            ack_requested=True, acked=True)
    assert [sent.data for sent in chip.transmitted] == [bytes([3, 17, 5, 0x80])]
    assert chip.transmitted[0].air == LPL_433_92          # same band, network and key as the node
    assert chip.mode == RX and chip.regs[0x25] == 0x40    # listening again, DIO0 = PayloadReady
    assert (radio.counters.received, radio.counters.acks_sent) == (1, 1)

    decoder = NodeDecoder(NodeTable.from_config(EMONTX4_NODE)[0])
    frame = decoder.decode(RawFrame(packet.sender, packet.payload, 0.0, packet.rssi, "rfm69"))
    values = frame.named_values()
    assert frame.node == "emonTx4_17"
    assert (values["MSG"], values["Vrms"], values["P4"], values["E4"], values["T1"], values["pulse"],
            values["rssi"]) == (1234, 240.12, 2400, 98000, 21.5, 42, -43)


def test_broadcasts_are_received_and_other_nodes_packets_are_not(make):
    radio, chip = make()
    for target in (255, 0, 9):
        chip.inject(lpl(target, 18, bytes([target, 1]), ctl=0x40))
        result = radio.receive(timeout=0)
        if target == 9:
            assert result is None
        else:
            assert result.target == target and not result.acked   # a broadcast is never ACKed
    assert (radio.counters.received, radio.counters.not_for_us, radio.counters.acks_sent) == (2, 1, 0)
    assert chip.transmitted == []


def test_promiscuous_mode_delivers_every_packet_without_acking_others(make):
    radio, chip = make(RadioSettings.lpl(promiscuous=True, pins=BOARD_PINS["emonpi2"], gpio_chip=CHIP))
    chip.inject(lpl(9, 18, b"\x01\x02", ctl=0x40))
    assert radio.receive(timeout=1) == Packet(18, 9, b"\x01\x02", -50, 0x40)
    assert chip.transmitted == []


def test_an_ack_from_a_node_is_counted_not_delivered(make):
    radio, chip = make()
    chip.inject(lpl(5, 17, b"", ctl=0x80))
    assert radio.receive(timeout=0) is None
    assert radio.counters.acks_received == 1


@pytest.mark.parametrize("fifo, detail", [
    (bytes([2, 5, 17]), "length byte 2: shorter than the LowPowerLab header"),
    (bytes([0]), "length byte 0"),
    (bytes([70]) + bytes(65), "length byte 70: more than the 66-byte FIFO holds"),
])
def test_wrong_length_is_reported_and_the_next_packet_arrives(make, fifo, detail):
    radio, chip = make()
    assert chip.inject_raw(fifo)
    bad = radio.receive(timeout=1)
    assert isinstance(bad, BadPacket) and bad.reason == BAD_LENGTH and detail in bad.detail
    assert radio.counters.bad_length == 1 and chip.mode == RX and not chip.fifo
    chip.inject(lpl(5, 17, b"\x07\x00"))
    assert radio.receive(timeout=1).payload == b"\x07\x00"


def test_a_packet_longer_than_the_chip_accepts_never_reaches_the_fifo(make):
    radio, chip = make()
    assert not chip.inject(bytes([67]) + bytes(67))
    assert chip.dropped[-1][0] == "length" and radio.receive(timeout=0) is None


def test_bad_crc_is_dropped_by_the_chip_as_emonhub_sets_it_up(make):
    radio, chip = make()
    assert not chip.inject(lpl(5, 17, b"\x01\x02"), crc_ok=False)
    assert chip.dropped[-1][0] == "crc" and radio.receive(timeout=0) is None


def test_bad_crc_is_counted_when_the_chip_keeps_it(make):
    radio, chip = make(RadioSettings.lpl(crc_errors=True, pins=BOARD_PINS["emonpi2"], gpio_chip=CHIP))
    assert chip.regs[0x37] == 0x98                       # CrcAutoClearOff
    chip.inject(lpl(5, 17, b"\x01\x02", ctl=0x40), crc_ok=False)
    bad = radio.receive(timeout=1)
    assert isinstance(bad, BadPacket) and bad.reason == BAD_CRC and radio.counters.bad_crc == 1
    assert chip.transmitted == []                        # no ACK for a damaged packet
    chip.inject(lpl(5, 17, b"\x01\x03"))
    assert radio.receive(timeout=1).payload == b"\x01\x03"


@pytest.mark.parametrize("air, why", [
    (Air(0x6C4000, 0x0240, b"\x2d\xd3", OEM_KEY), "network"),       # network 211
    (LPL_433_92, "frequency"),                                       # a node on band 49, base on 43
    (Air(0x6C4000, 0x028A, b"\x2d\xd2", OEM_KEY), "bit rate"),
])
def test_other_networks_and_bands_are_never_heard(make, air, why):
    radio, chip = make()
    assert not chip.inject(lpl(5, 17, b"\x01\x02"), air=air)
    assert chip.dropped[-1][0] == why and radio.receive(timeout=0) is None


@pytest.mark.parametrize("key", [b"another-16-chars", None])
def test_a_wrong_aes_key_delivers_garbage_that_is_not_passed_on(make, key):
    radio, chip = make()
    packet = lpl(5, 17, emontx4_payload())
    assert garbled(packet[1:], key, OEM_KEY)[0] not in (5, 255, 0)   # the garbage's target byte
    assert chip.inject(packet, air=Air(0x6C4000, 0x0240, b"\x2d\xd2", key))
    assert radio.receive(timeout=0) is None
    assert radio.counters.received == 0 and radio.counters.not_for_us == 1


def test_a_retransmission_within_the_window_is_acked_and_dropped(make, clock):
    radio, chip = make()
    packet = lpl(5, 17, emontx4_payload(msg=7), ctl=0x40)
    chip.inject(packet)
    assert radio.receive(timeout=1).acked
    clock.now += 0.03                                    # sendWithRetry: our ACK was lost
    chip.inject(lpl(5, 18, emontx4_payload(msg=1), ctl=0x40))   # another node in between
    assert radio.receive(timeout=1).sender == 18
    chip.inject(packet)
    assert radio.receive(timeout=0) is None
    assert radio.counters.duplicates == 1 and radio.counters.acks_sent == 3
    clock.now += 0.5                                     # the same bytes later: a new reading
    chip.inject(packet)
    assert radio.receive(timeout=1).sender == 17


def test_duplicate_filter_with_a_message_counter(clock):
    filter = DuplicateFilter(window=0.5, clock=clock, counter=lambda node, payload: message_counter(payload))
    assert not filter.is_repeat(17, emontx4_payload(msg=5, pulse=1))
    assert filter.is_repeat(17, emontx4_payload(msg=5, pulse=2))      # same Msg: a repeat
    assert not filter.is_repeat(17, emontx4_payload(msg=6, pulse=2))
    off = DuplicateFilter(window=0, clock=clock)
    assert not off.is_repeat(1, b"x") and not off.is_repeat(1, b"x")
    assert message_counter(emontx4_payload(msg=0xDEADBEEF)) == 0xDEADBEEF
    assert message_counter(b"\x01\x02") is None


def test_jeelib_packets_parity_and_addressing(make):
    radio, chip = make(RadioSettings.jeelib(node_id=5, gpio_chip=CHIP))
    chip.inject(jeelib(5, 10, b"\x01\x02"), rssi_dbm=-60, air=JEELIB_434)
    assert radio.receive(timeout=1) == Packet(10, 5, b"\x01\x02", -60, 0)
    chip.inject(jeelib(0, 0x80 | 11, b"\x03"), air=JEELIB_434)          # broadcast, a flag bit set
    assert radio.receive(timeout=1) == Packet(11, 0, b"\x03", -50, 0x80)
    chip.inject(jeelib(5, 10, b"\x04", group=211), air=JEELIB_434)      # another group's parity
    bad = radio.receive(timeout=1)
    assert isinstance(bad, BadPacket) and bad.reason == WRONG_NETWORK and "group 210" in bad.detail
    chip.inject(jeelib(7, 10, b"\x05"), air=JEELIB_434)
    assert radio.receive(timeout=0) is None and radio.counters.not_for_us == 1
    assert not chip.inject(jeelib(5, 10, b"\x06"), air=LPL_433)          # other bit rate and coding
    assert chip.transmitted == []


def test_jeelib_catch_all_node_hears_every_node(make):
    radio, chip = make(RadioSettings.jeelib(node_id=63, gpio_chip=CHIP))
    chip.inject(jeelib(7, 10, b"\x05"), air=JEELIB_434)
    assert radio.receive(timeout=1).target == 7


def test_jeelib_without_whitening_is_not_received(make):
    radio, chip = make(RadioSettings.jeelib(gpio_chip=CHIP))
    assert not chip.inject(jeelib(5, 10, b"\x01"), air=Air(0x6C8000, 0x028A, b"\x2d\xd2"))
    assert chip.dropped[-1][0] == "crc"


# -- waiting: edge events and the polling fallback ------------------------------------------------
def receive_in_thread(radio, timeout=5.0):
    results = queue.Queue()
    thread = threading.Thread(target=lambda: results.put(radio.receive(timeout=timeout)), daemon=True)
    thread.start()
    return results, thread


def test_receive_blocks_on_the_dio0_edge(make, gpio, monkeypatch):
    monkeypatch.setattr(rfm69_radio, "EDGE_RECHECK", 60.0)   # only the edge can wake it in time
    radio, chip = make()
    assert not radio.polling and radio.edge_problem is None
    request = next(r for r in gpio.requests if 25 in r.settings)
    assert request.settings[25].edge_detection == gpio.line.Edge.RISING
    results, thread = receive_in_thread(radio, timeout=60)
    with gpio.cond:   # the receiver is blocked in wait_edge_events
        assert gpio.cond.wait_for(lambda: gpio.waiting > 0, 5)
    chip.inject(lpl(5, 17, b"\x01\x02"))
    assert results.get(timeout=5).payload == b"\x01\x02"
    thread.join(5)


@pytest.mark.parametrize("problem, words", [
    (PermissionError(errno.EACCES, "Permission denied"), "permission denied"),
    (OSError(errno.EBUSY, "Device or resource busy"), "holds the line"),
    (OSError(errno.EINVAL, "Invalid argument"), "no such line"),
])
def test_without_edge_events_the_radio_polls_and_still_receives(make, gpio, problem, words):
    gpio.chips[CHIP].refuse_edges = problem
    radio, chip = make()
    assert radio.polling and words in radio.edge_problem and "GPIO25" in radio.edge_problem
    reads = chip.flag_reads
    results, thread = receive_in_thread(radio)
    assert chip.wait_for(lambda: chip.flag_reads >= reads + 2)    # it looked, waited, looked again
    chip.inject(lpl(5, 17, b"\x01\x02", ctl=0x40))
    packet = results.get(timeout=5)
    assert packet.payload == b"\x01\x02" and packet.acked
    thread.join(5)


def test_without_the_gpiod_package_a_radio_on_its_own_chip_select_polls(make, monkeypatch):
    monkeypatch.setitem(sys.modules, "gpiod", None)     # "import gpiod" fails
    settings = RadioSettings.lpl(pins=Pins(irq=25, cs=None, reset=None), gpio_chip=CHIP)
    radio, chip = make(settings, open=False)
    radio.lines._gpiod = None
    radio.open()
    assert radio.polling and "pip install 'gpiod>=2'" in radio.edge_problem
    chip.inject(lpl(5, 17, b"\x09"))
    assert radio.receive(timeout=1).payload == b"\x09"


def test_without_the_gpiod_package_a_hand_driven_chip_select_is_a_clear_error(make, monkeypatch):
    monkeypatch.setitem(sys.modules, "gpiod", None)
    radio, chip = make(open=False)
    radio.lines._gpiod = None
    with pytest.raises(RadioError, match=r"gpiod package .* not installed.*GPIO23, GPIO8"):
        radio.open()


def test_libgpiod_v1_bindings_are_named(make, monkeypatch):
    monkeypatch.setitem(sys.modules, "gpiod", type(sys)("gpiod"))   # v1: no request_lines
    radio, chip = make(open=False)
    radio.lines._gpiod = None
    with pytest.raises(RadioError, match="libgpiod 1.x"):
        radio.open()


@pytest.mark.parametrize("setup, words", [
    (lambda gpio: gpio.chips[CHIP].held_by_kernel.add(8), "cannot drive GPIO23, GPIO8 on /dev/gpiochip0: "
                                                          "a driver or another program holds the line"),
    (lambda gpio: setattr(gpio.chips[CHIP], "refuse_requests", PermissionError(errno.EACCES, "denied")),
     "gpio group"),
    (lambda gpio: gpio.chips.pop(CHIP), "no such GPIO chip"),
])
def test_gpio_trouble_is_named(gpio, setup, words):
    chip = Rfm69Chip(gpio, CHIP, dio0=25, reset=8, cs=23)
    setup(gpio)
    radio = Rfm69Radio(RadioSettings.lpl(pins=BOARD_PINS["emonpi2"], gpio_chip=CHIP), spi=chip.spidev(),
                       gpiod=gpio)
    with pytest.raises(RadioError, match=words):
        radio.open()


def test_spi_trouble_is_named_and_the_gpio_lines_are_released(make, gpio):
    radio, chip = make(open=False, chip_options={"spi_devices": set()})
    with pytest.raises(RadioError, match=r"/dev/spidev0\.0: no such SPI device: enable SPI \(dtparam=spi"):
        radio.open()
    assert gpio.chips[CHIP].owners == {}


def test_the_header_chip_is_found_by_its_label(gpio):
    gpio.chips[CHIP].label = "gpio-expander"
    gpio.add_chip("/dev/gpiochip4", label="pinctrl-rp1")
    assert find_header_chip(gpio, ["/dev/gpiochip0", "/dev/gpiochip1", "/dev/gpiochip4"]) == "/dev/gpiochip4"
    assert find_header_chip(gpio, ["/dev/gpiochip0"]) == "/dev/gpiochip0"


# -- a radio that stops answering ----------------------------------------------------------------
def test_a_radio_that_stops_answering_raises_instead_of_hanging(make):
    radio, chip = make()
    chip.dead = True                                     # ModeReady never sets again
    chip.inject(lpl(5, 17, b"\x01\x02"))
    with pytest.raises(RadioNotResponding, match="did not reach standby mode within 0.05 s .ModeReady"):
        radio.receive(timeout=1)


def test_a_dead_radio_at_start_is_an_error_and_releases_the_lines(make, gpio):
    radio, chip = make(open=False, chip_options={"dead": True})
    with pytest.raises(RadioNotResponding):
        radio.open()
    assert gpio.chips[CHIP].owners == {}


def test_a_slow_mode_change_is_waited_for(make):
    radio, chip = make(chip_options={"mode_ready_after_reads": 3})
    chip.inject(lpl(5, 17, b"\x01\x02", ctl=0x40))
    assert radio.receive(timeout=1).acked and chip.mode == RX


def test_a_transmission_that_never_ends_raises(make):
    radio, chip = make(tx_timeout=0.05)
    chip.stuck_tx = True
    with pytest.raises(RadioNotResponding, match="PacketSent never set"):
        radio.transmit(17, b"\x01")


def test_watchdog_reinitialises_a_radio_that_lost_its_settings(make, clock):
    radio, chip = make()
    watchdog = Watchdog(period=300, clock=clock)
    watchdog.started()
    chip.inject(lpl(5, 17, b"\x01"))
    assert radio.receive(timeout=1) and watchdog.due_in() is None
    watchdog.packet()
    chip._power_on()                                     # a brown-out: registers back to reset values
    assert not chip.inject(lpl(5, 17, b"\x02"))          # deaf now
    clock.now += 299.9
    assert not watchdog.expired() and watchdog.due_in() == pytest.approx(0.1)
    clock.now += 0.1
    assert watchdog.expired()
    radio.reinitialise()
    watchdog.started()
    assert radio.counters.initialised == 2 and watchdog.due_in() is None
    assert chip.inject(lpl(5, 17, b"\x03"))
    assert radio.receive(timeout=1).payload == b"\x03"


def test_watchdog_can_count_from_the_start(clock):
    watchdog = Watchdog(period=10, clock=clock, from_start=True)
    watchdog.started()
    clock.now += 10
    assert watchdog.expired()


# -- transmitting --------------------------------------------------------------------------------
def test_lpl_transmit(make):
    radio, chip = make()
    radio.transmit(17, b"\x01\x02")
    radio.transmit(radio.broadcast_id, b"\x03", request_ack=True)
    assert [s.data for s in chip.transmitted] == [bytes([5, 17, 5, 0, 1, 2]), bytes([4, 255, 5, 0x40, 3])]
    assert chip.transmitted[0].air == LPL_433 and chip.transmitted[0].pa_level == 0x96
    assert chip.mode == RX and chip.regs[0x25] == 0x40 and radio.counters.transmitted == 2


@pytest.mark.parametrize("target, payload", [(17, bytes(62)), (17, b""), (256, b"\x01"), (-1, b"\x01")])
def test_lpl_transmit_refuses_what_a_packet_cannot_carry(make, target, payload):
    radio, chip = make()
    with pytest.raises(ValueError):
        radio.transmit(target, payload)
    assert chip.transmitted == []


def test_jeelib_transmit(make):
    radio, chip = make(RadioSettings.jeelib(node_id=15, gpio_chip=CHIP))
    radio.transmit(10, b"\x01\x02")
    radio.transmit(radio.broadcast_id, b"\x03")
    parity = JeeLibNative.parity(210)
    assert [s.data for s in chip.transmitted] == [bytes([4, 10 | parity, 15, 1, 2]),
                                                  bytes([3, parity, 15, 3])]
    assert chip.transmitted[0].air == JEELIB_434
    with pytest.raises(ValueError):
        radio.transmit(64, b"\x01")
    with pytest.raises(ValueError):
        radio.transmit(10, b"\x01", request_ack=True)


def test_a_packet_waiting_in_the_chip_is_not_lost_by_a_transmission(make):
    radio, chip = make()
    chip.inject(lpl(5, 17, b"\x07\x08", ctl=0x40))
    radio.transmit(17, b"\x01")
    radio.reinitialise()                                   # nor by a re-initialisation
    assert radio.receive(timeout=0).payload == b"\x07\x08"
    assert [s.data[3] for s in chip.transmitted] == [0x80, 0x00]   # the ACK first, then ours


def test_transmit_waits_for_a_quiet_channel(make):
    radio, chip = make(chip_options={"busy_reads": 3})
    radio.transmit(17, b"\x01")
    assert chip.busy_reads == 0 and radio.counters.channel_busy == 0 and len(chip.transmitted) == 1


def test_transmit_sends_anyway_when_the_channel_stays_busy(make):
    radio, chip = make(chip_options={"busy_reads": 10 ** 9}, csma_timeout=0.01)
    radio.transmit(17, b"\x01")
    assert radio.counters.channel_busy == 1 and len(chip.transmitted) == 1


def test_transmissions_from_another_thread_are_serialised_with_receiving(make):
    radio, chip = make()
    results = queue.Queue()
    stop = threading.Event()

    def receiver():
        while not stop.is_set():
            result = radio.receive(timeout=0.05)
            if result is not None:
                results.put(result)

    thread = threading.Thread(target=receiver, daemon=True)
    thread.start()
    try:
        for n in range(150):
            assert chip.inject(lpl(5, 17, struct.pack("<I", n), ctl=0x40))
            radio.transmit(18, struct.pack("<I", n))        # races the receiver for the FIFO
            assert results.get(timeout=5).payload == struct.pack("<I", n)
    finally:
        stop.set()
        thread.join(5)
    sent = [s.data for s in chip.transmitted]
    assert sent.count(bytes([3, 17, 5, 0x80])) == 150 and len(sent) == 300
    assert chip.overlapping_transfers == 0 and chip.mode == RX


# -- never a crash --------------------------------------------------------------------------------
@hypothesis_settings(max_examples=150, deadline=None)
@given(fifo=st.binary(max_size=80), crc_ok=st.booleans(), fmt=st.sampled_from(["lpl", "jeelib"]),
       crc_errors=st.booleans())
def test_random_fifo_contents_never_crash_the_receiver(fifo, crc_ok, fmt, crc_errors):
    gpio = FakeGpiod()
    gpio.add_chip(CHIP)
    chip = Rfm69Chip(gpio, CHIP, dio0=25, cs=7)
    settings = RadioSettings(format=fmt, crc_errors=crc_errors, aes_key=None, gpio_chip=CHIP)
    radio = Rfm69Radio(settings, spi=chip.spidev(), gpiod=gpio)
    radio.open()
    try:
        chip.inject_raw(fifo, crc_ok=crc_ok)
        result = radio.receive(timeout=0)
        assert result is None or isinstance(result, (Packet, BadPacket))
        assert chip.mode == RX and not chip.fifo and not chip.payload_ready
    finally:
        radio.close()


@given(data=st.binary(max_size=80), rssi=st.integers(-128, 0))
def test_the_packet_parsers_never_raise(data, rssi):
    for parser in (LowPowerLab(RadioSettings.lpl()), JeeLibNative(RadioSettings.jeelib())):
        result = parser.parse(data, rssi)
        if isinstance(result, Packet):
            assert len(result.payload) == data[0] - (3 if isinstance(parser, LowPowerLab) else 2)


# -- settings and pins ----------------------------------------------------------------------------
def test_emonhub_header_pins_become_bcm_lines():
    assert Pins.from_header(irq=22, cs=16, reset=24) == BOARD_PINS["emonpi2"]
    assert Pins.from_header(irq=22, cs=26, reset=None) == BOARD_PINS["emonbase"]
    assert bcm_of_header_pin(37) == 26
    with pytest.raises(ValueError, match="header pin 6 is ground"):
        bcm_of_header_pin(6)
    with pytest.raises(ValueError, match="share one GPIO line"):
        Pins.from_header(irq=22, cs=22, reset=None)


def test_frequencies():
    assert frf_for(49) == frf_for(433.92) == 0x6C7AE1
    assert frf_for(43) == frf_for(433) == 0x6C4000
    assert frf_for(434) == 0x6C8000 and frf_for(868) == 0xD90000
    for bad in (44, 600, "433", True):
        with pytest.raises(ValueError):
            frf_for(bad)


@pytest.mark.parametrize("kwargs, words", [
    (dict(node_id=0), "node_id = 0"), (dict(node_id=255), "node_id = 255"),
    (dict(format="jeelib", node_id=64, aes_key=None), "node_id = 64 is out of range .1-63."),
    (dict(network=0), "network = 0"), (dict(aes_key="short"), "16 characters"),
    (dict(frequency=500.5 + 100), "frequency"), (dict(tx_power_dbm=14), "tx_power_dbm"),
    (dict(format="rf12"), "format 'rf12'"),
])
def test_settings_are_checked(kwargs, words):
    with pytest.raises(ValueError, match=words):
        RadioSettings(**kwargs)


def test_the_aes_key_is_not_shown():
    assert "89tx" not in repr(RadioSettings.lpl())
    assert RadioSettings.lpl(aes_key="0123456789abcdef").aes_key == b"0123456789abcdef"


def test_close_puts_the_radio_to_sleep_and_releases_everything(make, gpio):
    radio, chip = make()
    radio.close()
    assert chip.mode == SLEEP and gpio.chips[CHIP].owners == {} and radio.bus.spi.address is None
    with pytest.raises(RadioError, match="not open"):
        radio.receive(timeout=0)
    radio.close()                                          # twice is harmless
