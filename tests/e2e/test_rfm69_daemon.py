"""The daemon, as the service runs it, receiving emonTx4 packets from the RFM69 chip model.

Only the ``spidev`` and ``gpiod`` packages are replaced (tests/fake_radio_libs, first on the
daemon's PYTHONPATH); the test talks to the chip model over a Unix socket.
"""

import json
import socket
import time
import urllib.request

from tests.support.configs import listener_config, values_by_node
from tests.support.daemon import ROOT, WAIT, free_port, send_lines
from tests.support.mosquitto import Broker, Subscriber
from tests.support.rfm69_packets import EMONTX4_NODES, emontx4_payload, lpl

FAKE_LIBS = ROOT / "tests" / "support" / "fake_radio_libs"


class ChipLink:
    """The test's end of the chip model's control socket."""

    def __init__(self, path):
        self.path = str(path)
        self.stream = None

    def ask(self, command: str) -> str:
        if self.stream is None:
            connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            connection.settimeout(WAIT)
            connection.connect(self.path)
            self.stream = connection.makefile("rw")
        self.stream.write(command + "\n")
        self.stream.flush()
        return self.stream.readline().strip()

    def send(self, data: bytes, rssi: int, band: str = "49") -> None:
        assert self.ask("listen") == "ok"
        assert self.ask(f"send {data.hex()} {rssi} {band}") == "ok"


def fake_radio(control) -> dict:
    """The environment that gives the daemon the stand-in spidev and gpiod, wired as an emonPi2."""
    return {"PYTHONPATH": str(FAKE_LIBS), "OEMGW_FAKE_RADIO": str(control), "OEMGW_FAKE_RADIO_PINS": "25,23,8"}


def test_emontx4_packets_reach_emoncms_through_the_spi_radio(tmp_path, gateway_factory, emoncms):
    control = tmp_path / "radio.sock"
    status_port = free_port()
    env = fake_radio(control)
    config = listener_config(emoncms, "[[radio]]\ntype = rfm69\nboard = emonpi2\nfrequency = 49\n",
                             EMONTX4_NODES, gateway=f"clock = trusted\nstatus_port = {status_port}")
    gw = gateway_factory(config, env=env)
    gw.wait_for_log(r"INFO .*listener 'radio': RFM69 \(version 0x24\) on /dev/spidev0.0: lpl format, "
                    r"node 5, network 210, 433.92 MHz \(band 49\), waiting on GPIO25 edges")
    chip = ChipLink(control)
    chip.send(lpl(5, 17, emontx4_payload(msg=100, vrms=239.5), ctl=0x40), rssi=-58)
    chip.send(lpl(5, 17, emontx4_payload(msg=100, vrms=239.5), ctl=0x40), rssi=-58)   # a retry
    chip.send(lpl(5, 17, emontx4_payload(msg=101, vrms=241.25, power=(5, 0, 0, 0, 0, 0))), rssi=-71)
    rows = emoncms.wait_for_rows(2 * 19)
    assert values_by_node(rows)["emonTx4_17"] == {
        "MSG": 101, "Vrms": 241.25, "P1": 5, "P2": 0, "P3": 0, "P4": 0, "P5": 0, "P6": 0, "E1": 15000,
        "E2": 200, "E3": 0, "E4": 98000, "E5": 1, "E6": 0, "T1": 21.5, "T2": 300, "T3": 300,
        "pulse": 42, "rssi": -71}
    assert len(rows) == 2 * 19          # the retry was not passed on
    assert chip.ask("sent").split()[1:] == ["031105" + "80"] * 2   # each packet that asked was ACKed
    with urllib.request.urlopen(f"http://127.0.0.1:{status_port}/status", timeout=WAIT) as answer:
        status = json.load(answer)
    device = status["listeners"]["radio"]["devices"]["/dev/spidev0.0"]
    assert (device["state"], device["received"], device["duplicates"], device["acks_sent"]) == ("open", 2, 1, 2)
    assert status["nodes"]["17"]["rssi"] == -71
    assert gw.stop() == 0
    assert "Traceback" not in gw.log


def test_mqtt_tx_topic_repeater_port_and_emonglcd_time_go_out_on_the_radio(tmp_path, gateway_factory):
    control = tmp_path / "radio.sock"
    repeater = free_port()
    with Broker(tmp_path / "broker") as broker:
        subscriber = Subscriber(broker.port, ["emon/gateway/status"])
        gw = gateway_factory(f"""
        [gateway]
        loglevel = DEBUG
        clock = trusted
        [listeners]
        [[radio]]
        type = rfm69
        board = emonpi2
        sendtimeinterval = 3600
        repeater_port = {repeater}
        [buffers]
        [[mqtt]]
        type = mqtt
        host = 127.0.0.1
        port = {broker.port}
        retry_max = 0.2
        [nodes]
        [[17]]
        [[20]]
        nodename = relay
        [[[tx]]]
        datacodes = b, h
        """, env=fake_radio(control))
        gw.wait_for_log(r"INFO .*listener 'radio': RFM69 .* waiting on GPIO25 edges")
        chip = ChipLink(control)
        before = time.localtime()
        first = chip.ask("sent 1").split()[1]           # the time broadcast, sent at start
        after = time.localtime()
        assert first[:8] == "07ff0500" and first[8:10] == "00" and first[-2:] == "00"
        assert (int(first[10:12], 16), int(first[12:14], 16)) in {(t.tm_hour, t.tm_min) for t in (before, after)}
        chip.send(lpl(5, 17, b"\x01\x00"), rssi=-60, band="43")   # a reading: MQTT connects, TX subscribed
        subscriber.wait(lambda m: [x.payload for x in m] == ["online"], "online")
        subscriber.publish("emonhub/tx/relay/values", "1,300")
        assert chip.ask("sent 2").split()[2] == "07ff05001401" + "2c01"     # [20, 1, 300 as h]
        send_lines(repeater, b"20 2 -1\n12,34,17s\n")
        assert chip.ask("sent 4").split()[3:] == ["07ff05001402ffff",   # [20, 2, -1 as h] to all
                                                  "051105000c22"]      # [12, 34] to node 17
        assert gw.stop() == 0
        assert "Traceback" not in gw.log
