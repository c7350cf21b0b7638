"""emonhub.conf as a drop-in: OEM's shipped default configs run unchanged (only the machine's
ports, broker, server and key swapped for the test's), producing emonhub's MQTT topics and
payloads and its emoncms inputs, byte for byte.

The expected payloads are written out here from emonhub's code (EmonHubMqttInterfacer
``_process_post``, emonhub_interfacer ``_process_rx``, v2.7.19): values ``str()``-ed, whole
numbers from text lines as integers, ``missed``/``missedprc`` after a leading ``MSG``.
"""

import re

import pytest

from gateway import emonhub
from tests.e2e.test_rfm69_daemon import ChipLink, fake_radio
from tests.support.daemon import free_port, send_lines
from tests.support.emoncms_server import WRITE_KEY
from tests.support.fakeboard import FakeBoard, FakePort
from tests.support.gpiod_control import remote_pins
from tests.support.mbus_meter import kamstrup_601
from tests.support.modbus_server import SDM120_REGISTERS
from tests.support.modbus_server import SimulatedMeter as ModbusMeter
from tests.support.mosquitto import Broker, Subscriber
from tests.support.rfm69_packets import emontx4_payload, lpl
from tests.support.w1_bus import W1Bus
from tests.unit.test_emonhub_translation import CONFIGS, emontx4_packet, loader

USERS = {"emonpi": "emonpimqtt2016"}   # the MQTT login every OEM default config uses


def in_this_test(name: str, swap: dict) -> str:
    """A shipped emonhub.conf with only what belongs to the machine swapped for the test's;
    each text swapped must be in the file."""
    text = (CONFIGS / name).read_text()
    for old, new in swap.items():
        assert old in text, f"{old!r} is not in {name}"
        text = text.replace(old, new)
    return text


def machine(broker, emoncms, ports: dict) -> dict:
    """The swaps for a test machine: serial devices, the broker's port, emoncms and its key."""
    swaps = {"mqtt_port = 1883": f"mqtt_port = {broker.port}",
             "url = https://emoncms.org": f"url = {emoncms.url}"}
    swaps.update({f"com_port = {device}": f"com_port = {path}" for device, path in ports.items()})
    return swaps


def with_key(text: str) -> str:
    """The apikey placeholder (32 or 40 x's) replaced by the test emoncms' write key."""
    return re.sub(r"apikey = x+", f"apikey = {WRITE_KEY}", text)


@pytest.fixture
def broker(tmp_path):
    with Broker(tmp_path / "broker", users=USERS) as running:
        yield running


def published(subscriber, prefix):
    return [(m.topic, m.payload) for m in subscriber.messages if m.topic.startswith(prefix)]


KV_LINE_1 = "MSG:1,Vrms:240.12,P1:100,P2:-5,E1:5678,T1:21.50,T2:300.00,pulse:0"
KV_LINE_2 = "MSG:2,Vrms:240.30,P1:101,P2:-5,E1:5679,T1:21.50,T2:300.00,pulse:0"
KV_LINE_4 = "MSG:4,Vrms:239.90,P1:99,P2:-6,E1:5680,T1:21.00,T2:300.00,pulse:1"
NAMES = ["MSG", "Vrms", "P1", "P2", "E1", "T1", "T2", "pulse", "missed", "missedprc"]
# emonhub: float() then int() when whole; missed since the first MSG; missedprc 0 (an int) for
# the first message, then 100.0 * missed / (msg - first) (a float: "0.0", "33.333333333333336")
EMONHUB_VALUES = [
    ["1", "240.12", "100", "-5", "5678", "21.5", "300", "0", "0", "0"],
    ["2", "240.3", "101", "-5", "5679", "21.5", "300", "0", "0", "0.0"],
    ["4", "239.9", "99", "-6", "5680", "21", "300", "1", "1", "33.333333333333336"],
]


def nodevar_messages(node: str):
    return [(f"emon/{node}/{name}", value) for values in EMONHUB_VALUES for name, value in zip(NAMES, values)]


SOCKET_JSON = """\
[hub]
    loglevel = DEBUG
[interfacers]
    [[sock]]
        Type = EmonHubSocketInterfacer
        [[[init_settings]]]
            port_nb = {port}
        [[[runtimesettings]]]
            pubchannels = ToEmonCMS,
    [[MQTT]]
        Type = EmonHubMqttInterfacer
        [[[init_settings]]]
            mqtt_host = 127.0.0.1
            mqtt_port = {broker}
            mqtt_user = emonpi
            mqtt_passwd = emonpimqtt2016
        [[[runtimesettings]]]
            subchannels = ToEmonCMS,
            node_format_enable = 1
            node_format_basetopic = emonhub/
            node_JSON_enable = 1
            node_JSON_basetopic = emon/
[nodes]
    [[10]]
        nodename = emontx
        [[[rx]]]
            names = MSG, Vrms, P1
"""


def test_emonsd_default_config_publishes_emonhubs_topics_and_inputs(gateway_factory, broker, emoncms, tmp_path):
    """emonSD's default.emonhub.conf: the emonTx4 on USB0 (key:value lines at 115200) comes out
    as emonhub's nodevar topics and emoncms inputs; the SPI radio runs as an rfm69 listener, which
    says why it cannot open the radio here."""
    uart, usb = FakePort(tmp_path / "ttyAMA0").plug(), FakePort(tmp_path / "ttyUSB0").plug()
    text = in_this_test("default.emonhub.conf", machine(broker, emoncms, {
        "/dev/ttyAMA0": uart.link, "/dev/ttyUSB0": usb.link}))
    subscriber = Subscriber(broker.port, topics=("emon/#", "emonhub/#"), username="emonpi",
                            password="emonpimqtt2016")
    gateway = gateway_factory(with_key(text), name="emonhub.conf")
    gateway.wait_for_log(r"WARNING .*listener 'SPI': .*; trying again in 1 s")
    gateway.wait_for_log(r"listener 'USB0': reading")
    usb.write(b"\r\n")   # the end of the line the board was sending when the port opened
    for line in (KV_LINE_1, KV_LINE_2, KV_LINE_4):
        usb.write(line.encode() + b"\r\n")
    expected = nodevar_messages("emonTx4")
    subscriber.wait(lambda m: len(published(subscriber, "emon/")) >= len(expected), "30 nodevar messages")
    subscriber.sync()
    assert published(subscriber, "emon/") == expected
    assert published(subscriber, "emonhub/") == []   # node_format_enable = 0, node_JSON_enable = 0
    rows = emoncms.wait_until(lambda rows: len(rows) >= 30, what="30 inputs")
    assert {row.node for row in rows} == {"emonTx4"}   # sendnames = 1: the nodename
    assert [row.name for row in rows[:10]] == NAMES
    assert [row.value for row in rows[20:]] == [4, 239.9, 99, -6, 5680, 21, 300, 1, 1, 33.333333333333336]
    gateway.stop()
    uart.unplug()
    usb.unplug()


def test_emonsd_default_config_autoconf_names_a_relayed_emontx4(gateway_factory, broker, emoncms, tmp_path):
    """A radio packet the board on ttyAMA0 relays (``OK 17 ... (-42)``, emonhub's OEM interfacer
    reads these) from an emonTx4 nobody described: autoconf's template names it emonTx4_17."""
    uart, usb = FakePort(tmp_path / "ttyAMA0").plug(), FakePort(tmp_path / "ttyUSB0").plug()
    text = in_this_test("default.emonhub.conf", machine(broker, emoncms, {
        "/dev/ttyAMA0": uart.link, "/dev/ttyUSB0": usb.link}))
    subscriber = Subscriber(broker.port, topics=("emon/#",), username="emonpi", password="emonpimqtt2016")
    gateway = gateway_factory(with_key(text), name="emonhub.conf")
    gateway.wait_for_log(r"listener 'EmonPi2': reading")
    uart.write(b"\r\n")   # the end of the line the board was sending when the port opened
    uart.write(("OK 17 " + " ".join(map(str, emontx4_packet(1523))) + " (-42)\r\n").encode())
    names = ["MSG", "Vrms", *(f"P{i}" for i in range(1, 7)), *(f"E{i}" for i in range(1, 7)), "T1", "T2", "T3",
             "pulse", "missed", "missedprc", "rssi"]
    values = ["1523", "240.12", "100", "0", "0", "0", "0", "0", "5678", "0", "0", "0", "0", "0", "21.5", "300", "300",
              "7", "0", "0", "-42"]
    subscriber.wait(lambda m: len(published(subscriber, "emon/")) >= len(names), "the emonTx4's inputs")
    subscriber.sync()
    assert published(subscriber, "emon/") == [(f"emon/emonTx4_17/{n}", v) for n, v in zip(names, values)]
    assert re.search(r"node 17: 52-byte packets decoded with the built-in template emonTx4 \(as emonTx4_17\)",
                     gateway.log)
    gateway.stop()
    uart.unplug()
    usb.unplug()


@pytest.mark.parametrize("name, board", [("emonpi2.default.emonhub.conf", "EmonPi2"),
                                         ("emonpi3.default.emonhub.conf", "EmonPi3")])
def test_emonpi2_and_emonpi3_default_configs(gateway_factory, broker, emoncms, tmp_path, name, board):
    """The board's own serial interfacer, named by its section (emonhub's nodename default)."""
    uart, usb = FakePort(tmp_path / "ttyAMA0").plug(), FakePort(tmp_path / "ttyUSB0").plug()
    text = in_this_test(name, machine(broker, emoncms, {"/dev/ttyAMA0": uart.link, "/dev/ttyUSB0": usb.link}))
    subscriber = Subscriber(broker.port, topics=("emon/#",), username="emonpi", password="emonpimqtt2016")
    gateway = gateway_factory(with_key(text), name="emonhub.conf")
    for missing in ("EmonHubRFM69LPLInterfacer", "EmonHubDS18B20Interfacer"):
        if loader().available("listeners", emonhub.INTERFACERS[missing].type) is None:
            assert f"Type: {missing} runs as a" in gateway.log
    gateway.wait_for_log(r"WARNING .*listener 'SPI': .*; trying again in 1 s")   # no radio here
    gateway.wait_for_log(rf"listener '{board}': reading")
    uart.write(b"\r\n")   # the end of the line the board was sending when the port opened
    uart.write(b"{\"MSG\":7,\"Vrms\":241.5,\"P1\":1200,\"E1\":17}\r\n")   # the JSON form (j1)
    expected = [(f"emon/{board}/{n}", v) for n, v in
                [("MSG", "7"), ("Vrms", "241.5"), ("P1", "1200"), ("E1", "17"), ("missed", "0"), ("missedprc", "0")]]
    subscriber.wait(lambda m: len(published(subscriber, "emon/")) >= len(expected), "the board's inputs")
    subscriber.sync()
    assert published(subscriber, "emon/") == expected
    rows = emoncms.wait_until(lambda rows: len(rows) >= 6, what="6 inputs")
    assert [(r.node, r.name, r.value) for r in rows] == [
        (board, "MSG", 7), (board, "Vrms", 241.5), (board, "P1", 1200), (board, "E1", 17), (board, "missed", 0),
        (board, "missedprc", 0)]
    gateway.stop()
    uart.unplug()
    usb.unplug()


def test_legacy_emonpi_config_radio_packets_with_nodes_and_templates(gateway_factory, broker, emoncms, tmp_path):
    """The emonPi v1 config: an RFM2Pi board (RF12demo ``OK`` lines): node 5 decoded by the
    file's [nodes], published in both the nodevar and the node (CSV, by id) format, RSSI last."""
    board = FakeBoard(tmp_path / "ttyAMA0", node_id=5).plug()
    text = in_this_test("emonpi.default.emonhub.conf", machine(broker, emoncms, {"/dev/ttyAMA0": board.port.link}))
    subscriber = Subscriber(broker.port, topics=("emon/#", "emonhub/#"), username="emonpi", password="emonpimqtt2016")
    gateway = gateway_factory(with_key(text), name="emonhub.conf")
    assert "calibration" in gateway.log   # a board setting not sent: said
    # power1 100, power2 -20, sum 80, vrms 24012 (x0.01), t1..t6 215 (x0.1), pulsecount 7
    payload = b"".join(v.to_bytes(2, "little", signed=True) for v in (100, -20, 80, 24012, 215, 0, 0, 0, 0, 0)) \
        + (7).to_bytes(4, "little")
    gateway.wait_for_log(r"listener 'RFM2Pi': board RF12demo")   # (past the port's settling time)
    board.packet(5, payload, rssi=-42)
    subscriber.wait(lambda m: published(subscriber, "emonhub/"), "the CSV message")
    subscriber.wait(lambda m: len(published(subscriber, "emon/")) >= 12, "12 nodevar messages")
    subscriber.sync()
    assert published(subscriber, "emonhub/") == [("emonhub/rx/5/values", "100,-20,80,240.12,21.5,0,0,0,0,0,7,-42")]
    assert published(subscriber, "emon/") == [
        ("emon/emonpi/power1", "100"), ("emon/emonpi/power2", "-20"), ("emon/emonpi/power1pluspower2", "80"),
        ("emon/emonpi/vrms", "240.12"), ("emon/emonpi/t1", "21.5")] + \
        [(f"emon/emonpi/t{i}", "0") for i in range(2, 7)] + \
        [("emon/emonpi/pulsecount", "7"), ("emon/emonpi/rssi", "-42")]
    gateway.stop()
    board.unplug()


def test_json_and_node_formats_byte_for_byte(gateway_factory, broker):
    """emonhub's JSON form (json.dumps spacing, names in order, then time as a float) and its
    node form (by node id, values in order)."""
    port = free_port()
    subscriber = Subscriber(broker.port, topics=("emon/#", "emonhub/#"), username="emonpi", password="emonpimqtt2016")
    gateway = gateway_factory(SOCKET_JSON.format(port=port, broker=broker.port), name="emonhub.conf")
    send_lines(port, b"10 1 240.12 100.0\n")
    subscriber.wait(lambda m: len(m) >= 2, "two messages")
    subscriber.sync()
    got = dict(published(subscriber, "emon"))
    assert got["emonhub/rx/10/values"] == "1,240.12,100,0,0"
    assert re.fullmatch(r'\{"MSG": 1, "Vrms": 240\.12, "P1": 100, "missed": 0, "missedprc": 0, "time": '
                        r'1\d{9}\.\d+\}', got["emon/emontx"]), got["emon/emontx"]
    assert set(got) == {"emonhub/rx/10/values", "emon/emontx"}   # no status topic, no other format
    gateway.stop()


def test_sendnames_zero_gives_emonhubs_positional_inputs_by_node_id(gateway_factory, emoncms):
    """emonhub's sendnames = 0: the node id, not its nodename; inputs 1, 2, 3 ..."""
    port = free_port()
    gateway = gateway_factory(f"""\
[hub]
    loglevel = DEBUG
[interfacers]
    [[sock]]
        Type = EmonHubSocketInterfacer
        [[[init_settings]]]
            port_nb = {port}
        [[[runtimesettings]]]
            pubchannels = ToEmonCMS,
    [[cms]]
        Type = EmonHubEmoncmsHTTPInterfacer
        [[[runtimesettings]]]
            subchannels = ToEmonCMS,
            url = {emoncms.url}
            apikey = {WRITE_KEY}
            sendnames = 0
[nodes]
    [[10]]
        nodename = emontx
        [[[rx]]]
            names = power1, vrms
""", name="emonhub.conf")
    send_lines(port, b"10 230 241.5\n")
    rows = emoncms.wait_until(lambda rows: len(rows) >= 2, what="2 inputs")
    assert [(r.node, r.name, r.value) for r in rows] == [("10", "1", 230), ("10", "2", 241.5)]
    gateway.stop()




def test_an_edited_emonhub_conf_applies_live(gateway_factory, broker):
    """emonhub applies runtimesettings live; so does the gateway, on the file's next save."""
    import signal
    from tests.support.daemon import rewrite_config
    port = free_port()
    text = SOCKET_JSON.format(port=port, broker=broker.port)
    subscriber = Subscriber(broker.port, topics=("emon/#", "emonhub/#", "site/#"), username="emonpi",
                            password="emonpimqtt2016")
    gateway = gateway_factory(text, name="emonhub.conf")
    rewrite_config(gateway.config_path, text.replace("node_JSON_basetopic = emon/", "node_JSON_basetopic = site/"))
    gateway.signal(signal.SIGHUP)
    gateway.wait_for_log(r"config .*emonhub\.conf re-read")
    send_lines(port, b"10 1 2 3\n")
    subscriber.wait(lambda m: published(subscriber, "site/"), "the JSON message under the new base topic")
    subscriber.sync()
    assert [topic for topic, _ in published(subscriber, "site/")] == ["site/emontx"]
    assert published(subscriber, "emon/") == []
    gateway.stop()


# -- the emonHP bundle, every device simulated ---------------------------------------------------
EMONTX4_NAMES = ["MSG", "Vrms", *(f"P{i}" for i in range(1, 7)), *(f"E{i}" for i in range(1, 7)), "T1", "T2", "T3",
                 "pulse", "missed", "missedprc", "rssi"]
# The Kamstrup 601's telegram as emonhub 2.7.19 publishes it for ``type = standard``: every record
# it decodes by emonhub's record name (stored values, _Max values, dates as the integer of their
# data bytes, "Ontime Hours" with its space), ``heat_calc`` last. Values are the meter's decimals
# (emonhub's floating point gives ReturnT 46.160000000000004 and the zero volumes 0.0; docs/emonhub.md).
KAMSTRUP_601_EMONHUB = [
    ("FabNo", "6855817"), ("Energy", "37351"), ("Volume", "561.08"), ("Ontime Hours", "985"), ("FlowT", "101.69"),
    ("ReturnT", "46.16"), ("DeltaT", "55.53"), ("Power", "34700"), ("Power_Max", "44800"), ("FlowRate", "0.543"),
    ("FlowRate_Max", "0.628"), ("Energy2", "0"), ("Energy3", "0"), ("Volume2", "0"), ("Volume3", "0"),
    ("Energy4", "0"), ("DateTime", "291843866"), ("Energy5", "33361"), ("Volume4", "500.98"), ("Power_Max2", "55000"),
    ("FlowRate_Max2", "1.027"), ("Energy6", "0"), ("Energy7", "0"), ("Volume5", "0"), ("Volume6", "0"),
    ("Energy8", "0"), ("Record27", "7263"), ("heat_calc", "34759.46625")]
THERMOMETER = "28-000008e2db06"


@pytest.fixture
def emonhp_pins():
    with remote_pins() as chip:
        yield chip


def test_emonhp_default_config_with_every_device_simulated(gateway_factory, broker, emoncms, modbus_server,
                                                           mbus_bus, emonhp_pins, tmp_path):
    """OEM's emonHP config, unchanged but for the machine's devices: the SDM120 on a Modbus RTU
    pty (for ``/dev/ttyACM*``), the heat meter on an M-Bus pty with a Kamstrup 601's telegram (for
    the Prolific adapter's USB ids), a w1 tree in a temp folder (for /sys/bus/w1/devices), the
    radio and GPIO22 (header pin 15) through the stand-in spidev and gpiod. Every device's
    readings come out as emonhub publishes them for this file: ``emon/<node>/<input>`` and the
    same emoncms inputs."""
    modbus = modbus_server(ModbusMeter(1, input=SDM120_REGISTERS)).start_rtu(tmp_path / "ttyACM0")
    heat = mbus_bus(kamstrup_601(1)).start_serial(tmp_path / "ttyMBUS")
    w1 = W1Bus(tmp_path / "w1")
    w1.set(THERMOMETER, 21500)
    text = in_this_test("emonhp.default.emonhub.conf", dict(machine(broker, emoncms, {}), **{
        "device = /dev/ttyACM*": f"device = {modbus}",
        "device_vid = 1659\n            device_pid = 9123": f"device = {heat}",
        "nodename = sensors": f"nodename = sensors\n            w1_root = {w1.root}"}))
    control = tmp_path / "radio.sock"
    env = dict(fake_radio(control), OEMGW_FAKE_RADIO_PINS="25,23,8",   # the emonHP's: header 22, 16, 24
               OEMGATEWAY_TEST_GPIOD=str(emonhp_pins.path))
    subscriber = Subscriber(broker.port, topics=("emon/#", "emonhub/#"), username="emonpi",
                            password="emonpimqtt2016")
    gateway = gateway_factory(with_key(text), name="emonhub.conf", env=env)
    gateway.wait_for_log(r"listener 'SPI': RFM69 .* node 5, network 210, 433.92 MHz \(band 49\), "
                         r"waiting on GPIO25 edges")
    ChipLink(control).send(lpl(5, 18, emontx4_payload(msg=7, vrms=239.5)), rssi=-60)
    expected = {
        "emon/heatpump/electric_Power": "1498.2", "emon/heatpump/electric_Energy": "1234.5",   # precision 1, 3
        **{f"emon/heatpump/heatmeter_{name}": value for name, value in KAMSTRUP_601_EMONHUB},
        "emon/gpio/pin15": "1",                  # invert = 1: the line is low
        f"emon/sensors/{THERMOMETER}": "21.5",
        **{f"emon/emonTx4_18/{name}": value for name, value in zip(EMONTX4_NAMES, [
            "7", "239.5", "120", "-35", "0", "2400", "7", "0", "15000", "200", "0", "98000", "1", "0",
            "21.5", "300", "300", "42", "0", "0", "-60"])}}
    subscriber.wait(lambda m: set(expected) <= {topic for topic, _ in published(subscriber, "emon/")},
                    "every device's inputs")
    emonhp_pins.drive(22, True)                  # the relay closes: the inverted input reads 0
    subscriber.wait(lambda m: ("emon/gpio/pin15", "0") in published(subscriber, "emon/"), "pin15 = 0")
    subscriber.sync()
    got = published(subscriber, "emon/")
    first = {}
    for topic, payload in got:
        first.setdefault(topic, payload)
    assert first == expected
    assert published(subscriber, "emonhub/") == []   # node_format_enable = 0
    rows = emoncms.wait_until(lambda rows: {(r.node, r.name) for r in rows} >= {
        tuple(topic.split("/")[1:]) for topic in expected}, what="every input in emoncms")
    values = {}
    for row in rows:
        values.setdefault(f"emon/{row.node}/{row.name}", row.value)
    assert values == {topic: float(payload) for topic, payload in expected.items()}
    assert gateway.stop() == 0
    assert "Traceback" not in gateway.log
