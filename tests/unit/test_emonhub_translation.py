"""emonhub.conf translated into the gateway's settings (``gateway.emonhub``): OEM's shipped
configs load, channels become routing, what cannot run is a warning at its line, the
conversion keeps the config and its comments; and decoding as emonhub does (autoconf's
templates, whole numbers, missed/missedprc)."""

import re
import subprocess
import sys

import pytest

from buffers import BUFFERS
from gateway.spool import SPOOL_SPEC
from gateway.config import ConfigError, ConfigLoader
from listeners import LISTENERS
from tests.support.daemon import DAEMON, FIXTURES, WAIT

CONFIGS = FIXTURES / "emonhub"


def loader() -> ConfigLoader:
    return ConfigLoader(LISTENERS, BUFFERS, SPOOL_SPEC)


def write(tmp_path, text: str) -> str:
    path = tmp_path / "emonhub.conf"
    path.write_text(text)
    return str(path)


MINIMAL = """\
[hub]
    loglevel = INFO
[interfacers]
    [[USB0]]
        Type = EmonHubOEMInterfacer
        [[[init_settings]]]
            com_port = /dev/ttyUSB0
            com_baud = 115200
        [[[runtimesettings]]]
            pubchannels = ToEmonCMS,
            subchannels = ToRFM12,
    [[sock]]
        Type = EmonHubSocketInterfacer
        [[[init_settings]]]
            port_nb = 50012
        [[[runtimesettings]]]
            pubchannels = Other,
    [[MQTT]]
        Type = EmonHubMqttInterfacer
        [[[init_settings]]]
            mqtt_host = 127.0.0.1
        [[[runtimesettings]]]
            pubchannels = ToRFM12,
            subchannels = ToEmonCMS,
            nodevar_format_enable = 1
            nodevar_format_basetopic = emon/
    [[Graphite]]
        Type = EmonHubGraphiteInterfacer
        [[[init_settings]]]
        [[[runtimesettings]]]
            subchannels = ToEmonCMS,
    [[mystery]]
        Type = EmonHubFluxCapacitorInterfacer
[nodes]
"""


def emontx4_packet(msg: int) -> bytes:
    """An emonTx4 (emon_CM_6CT_temperature) radio payload: 52 bytes, little-endian."""
    import struct
    return struct.pack("<Lhhhhhhhllllllhhh L".replace(" ", ""), msg, 24012, 100, 0, 0, 0, 0, 0,
                       5678, 0, 0, 0, 0, 0, 2150, 30000, 30000, 7)



@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.conf")))
def test_every_shipped_config_loads(name):
    config = loader().load(str(CONFIGS / name))
    assert config.gateway["emonhub_values"] is True
    assert "MQTT" in config.buffers and config.buffers["MQTT"].settings["emonhub_payloads"] is True


def test_emonhp_digital_input_is_the_header_pin_it_names():
    """emonhub numbers GPIO pins as the header does: the emonHP's ``pins = 15,`` is GPIO22."""
    from gateway.eventloop import EventLoop
    from listeners.gpio import GpioListener
    settings = loader().load(str(CONFIGS / "emonhp.default.emonhub.conf")).listeners["digital"].settings
    assert settings["pin_numbering"] == "board"
    loop = EventLoop()
    listener = GpioListener("digital", settings, loop, lambda frame: None)
    loop.close()
    assert listener.pins() == [22] and listener.input_names == ("pin15",)
    assert listener.settings["active_low"] is True     # invert = 1: a low line reads 1


def test_autoconf_turns_the_built_in_templates_on(tmp_path):
    on = loader().load(str(CONFIGS / "default.emonhub.conf"))
    assert on.gateway["node_templates"] is True
    path = tmp_path / "emonhub.conf"
    path.write_text((CONFIGS / "default.emonhub.conf").read_text().replace("autoconf = 1", "autoconf = 0"))
    assert loader().load(str(path)).gateway["node_templates"] is False


def test_channels_become_routing_and_tx(tmp_path):
    config = loader().load(write(tmp_path, MINIMAL))
    mqtt = config.buffers["MQTT"].settings
    assert mqtt["from_listeners"] == ["USB0"]   # sock publishes on another channel
    assert mqtt["tx_listener"] == "USB0"        # the one input subscribing to ToRFM12
    assert mqtt["tx_topic"] == "emonhub/tx/{node}/values"
    assert mqtt["formats"] == ["nodevar", "csv"]   # emonhub's class default: node_format_enable = 1
    assert mqtt["username"] == "" and mqtt["status_topic"] == ""
    assert config.listeners["USB0"].settings["com_baud"] == 115200
    assert config.listeners["sock"].settings["port"] == 50012


def test_a_type_we_do_not_have_is_a_warning_naming_it_and_the_rest_runs(tmp_path):
    config = loader().load(write(tmp_path, MINIMAL))
    assert sorted(config.listeners) == ["USB0", "sock"]
    graphite = next(w for w in config.warnings if "Graphite" in w)
    assert re.match(r".*emonhub\.conf:28: \[interfacers\] \[\[Graphite\]\] Type: the gateway has no Graphite "
                    r"output \(EmonHubGraphiteInterfacer\): this interfacer is not run", graphite)
    assert any("Type = EmonHubFluxCapacitorInterfacer is not an emonhub interfacer the gateway knows" in w
               for w in config.warnings)


def test_unknown_keys_are_named_at_their_line(tmp_path):
    text = MINIMAL.replace("            com_baud = 115200\n", "            com_baud = 115200\n            wobble = 1\n")
    config = loader().load(write(tmp_path, text))
    assert any(re.search(r"emonhub\.conf:9: .*wobble: 'wobble' is not a setting of EmonHubOEMInterfacer", w)
               for w in config.warnings)


def test_the_board_settings_emonhub_sends_are_sent_by_the_oemserial_listener(tmp_path):
    text = MINIMAL.replace("            com_baud = 115200\n",
                           "            com_baud = 115200\n            vcal = 268.97\n            baseid = 18\n")
    config = loader().load(write(tmp_path, text))
    usb = config.listeners["USB0"]
    assert usb.type_name == "oemserial" and usb.settings["format"] == "oem"
    assert (usb.settings["vcal"], usb.settings["nodeid"]) == (["268.97"], 18)
    assert not any("vcal" in w or "baseid" in w for w in config.warnings)


def test_a_problem_in_a_translated_setting_points_at_the_emonhub_line(tmp_path):
    text = MINIMAL.replace("port_nb = 50012", "port_nb = 99999")
    with pytest.raises(ConfigError) as caught:
        loader().load(write(tmp_path, text))
    assert re.search(r"emonhub\.conf:15: \[listeners\] \[\[sock\]\] port_nb = '?99999", "\n".join(caught.value.problems)) \
        or re.search(r"emonhub\.conf:15: .*port", "\n".join(caught.value.problems))


def test_sendnames_zero_and_the_x_placeholder_key(tmp_path):
    text = MINIMAL + """"""
    text = text.replace("[[Graphite]]", """[[cms]]
        Type = EmonHubEmoncmsHTTPInterfacer
        [[[init_settings]]]
        [[[runtimesettings]]]
            subchannels = ToEmonCMS,
            apikey = xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
            sendnames = 0
    [[Graphite]]""")
    config = loader().load(write(tmp_path, text))
    cms = config.buffers["cms"].settings
    assert cms["send_names"] is False and cms["apikey"] == "" and cms["url"] == "http://emoncms.org"
    assert any("apikey is the x placeholder" in w for w in config.warnings)


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.conf")))
def test_the_converted_file_is_the_same_config(tmp_path, name):
    result = subprocess.run([sys.executable, str(DAEMON), "--convert-emonhub", str(CONFIGS / name)],
                            capture_output=True, text=True, timeout=WAIT)
    assert result.returncode == 0, result.stderr
    converted = tmp_path / "oemgateway.conf"
    converted.write_text(result.stdout)
    direct, native = loader().load(str(CONFIGS / name)), loader().load(str(converted))
    assert native.masked()["listeners"] == direct.masked()["listeners"]
    assert native.masked()["buffers"] == direct.masked()["buffers"]
    assert native.masked()["nodes"] == direct.masked()["nodes"]
    assert {k: v for k, v in native.gateway.items()} == direct.gateway


def test_the_converted_file_keeps_comments_where_they_map():
    result = subprocess.run([sys.executable, str(DAEMON), "--convert-emonhub", str(CONFIGS / "emonpi.default.emonhub.conf")],
                            capture_output=True, text=True, timeout=WAIT)
    text = result.stdout
    assert re.search(r"^\s*com_baud = 38400\s+# 9600 for old RFM12Pi$", text, re.M)
    assert re.search(r"^\s*baseid = 5\s+# emonPi / emonBase nodeID$", text, re.M)
    assert "### loglevel must be one of DEBUG, INFO, WARNING, ERROR, and CRITICAL" in text
    assert re.search(r"^# Notes from the conversion:", text, re.M)
    assert "calibration" in result.stderr


def test_convert_refuses_a_file_that_is_not_emonhub(tmp_path):
    path = tmp_path / "oemgateway.conf"
    path.write_text("[gateway]\nloglevel = INFO\n")
    result = subprocess.run([sys.executable, str(DAEMON), "--convert-emonhub", str(path)],
                            capture_output=True, text=True, timeout=WAIT)
    assert result.returncode == 1 and "not an emonhub.conf" in result.stderr and result.stdout == ""


def test_autoconf_names_an_emontx4_without_nodes_and_counts_missed_packets():
    from gateway.frame import RawFrame
    from gateway.nodes import NodeDecoder, NodeTable
    decoder = NodeDecoder()
    decoder.configure(NodeTable(), node_templates=True, emonhub_values=True)
    frames = [decoder.decode(RawFrame(17, emontx4_packet(msg), 1.0, -42, "radio")) for msg in (10, 11, 14)]
    first = frames[0]
    assert first.node == "emonTx4_17" and decoder.node_id("emonTx4_17") == 17
    assert first.named_values() == {
        "MSG": 10, "Vrms": 240.12, "P1": 100, "P2": 0, "P3": 0, "P4": 0, "P5": 0, "P6": 0, "E1": 5678, "E2": 0,
        "E3": 0, "E4": 0, "E5": 0, "E6": 0, "T1": 21.5, "T2": 300, "T3": 300, "pulse": 7, "missed": 0,
        "missedprc": 0, "rssi": -42}
    assert [(f.named_values()["missed"], f.named_values()["missedprc"]) for f in frames] == \
        [(0, 0), (0, 0.0), (2, 50.0)]
    assert type(frames[1].named_values()["missedprc"]) is float   # emonhub publishes "0.0" after the first


def test_without_autoconf_an_undescribed_node_stays_unnamed():
    from gateway.frame import RawFrame
    from gateway.nodes import NodeDecoder, NodeTable
    decoder = NodeDecoder()
    decoder.configure(NodeTable(), node_templates=False, emonhub_values=False)
    frame = decoder.decode(RawFrame(17, emontx4_packet(1), 1.0, None, "radio"))
    assert frame.node == 17 and frame.names is None and len(frame.values) == 26   # int16 pairs


def test_whole_numbers_of_text_sources_are_integers_as_in_emonhub():
    from gateway.frame import Frame
    from gateway.nodes import NodeDecoder, NodeTable
    decoder = NodeDecoder()
    text_frame = Frame("emonTx4", (300.0, 21.5, 7), 1.0, ("T2", "T1", "pulse"), None, "USB0")
    assert decoder.decode(text_frame).values == (300.0, 21.5, 7)
    decoder.configure(NodeTable(), emonhub_values=True)
    values = decoder.decode(text_frame).values
    assert values == (300, 21.5, 7) and type(values[0]) is int


def test_a_file_with_our_sections_is_ours_even_with_an_emonhub_section(tmp_path):
    config = loader().load(write(tmp_path, "[gateway]\nloglevel = INFO\n[hub]\nloglevel = DEBUG\n"))
    assert config.gateway["loglevel"] == "INFO"
    assert any("[hub] is not a section the gateway reads" in w for w in config.warnings)


def test_a_plugin_whose_library_is_missing_is_a_warning_and_the_rest_runs(tmp_path):
    """A device plugin that needs a package this machine lacks (spidev on a PC): named, left out."""
    from configobj import ConfigObj
    from gateway import emonhub

    def available(kind, type_name):
        if type_name == "socket":
            raise ImportError("No module named 'spidev'", name="spidev")
        return loader().available(kind, type_name)

    translation = emonhub.translate(ConfigObj(MINIMAL.splitlines(), interpolation=False), available)
    assert "sock" not in translation.config["listeners"] and "USB0" in translation.config["listeners"]
    assert any("needs the Python package 'spidev', not installed here" in message
               for _, _, message in translation.warnings)
