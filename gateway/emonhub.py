"""emonhub.conf as a config of this gateway: the same file runs unchanged, or is converted.

An emonhub config has ``[hub]``, ``[interfacers]`` (each ``[[name]]`` with ``Type``,
``[[[init_settings]]]`` and ``[[[runtimesettings]]]``) and ``[nodes]``. ``translate`` turns
it into the gateway's own sections, which are then checked like any config:

* ``[hub]`` -> ``[gateway]`` (``HUB_KEYS``); ``autoconf = 1`` turns on the built-in node
  templates; emonhub's ``missed``/``missedprc`` inputs are always on, as emonhub adds them.
* each interfacer -> a listener or a buffer, by its ``Type`` (``INTERFACERS``: the one table
  to extend when a plugin type lands), its keys renamed to ours, its emonhub defaults written
  out where ours differ (emonhub's OEM interfacer reads at 38400 baud).
* channels: an output takes the inputs that publish on a channel it subscribes to
  (``from_listeners``), and the MQTT output's TX messages go to the input subscribing to its
  publish channels (``tx_listener``).
* ``[nodes]`` is the same format: copied as it is.

What cannot be run is a warning naming the interfacer and its Type, and the rest runs: a
Type with no counterpart here (``UNSUPPORTED``), a counterpart whose plugin is not in this
version, a key that has no meaning here. docs/emonhub.md lists every Type and key, with what
the gateway does for it.

``convert`` writes the translation as an ``oemgateway.conf`` text, with the file's comments
carried to the settings they were written next to.
"""

import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Tuple

from configobj import ConfigObj, Section

Path = Tuple[str, ...]

# -- the tables -------------------------------------------------------------------------------
HUB_KEYS: Dict[str, str] = {
    "loglevel": "loglevel",
    "autoconf": "node_templates",
    "use_syslog": "syslog",
    "log_backup_count": "log_backups",
    "log_max_bytes": "log_max_mb",
}

GENERIC_KEYS = ("pubchannels", "subchannels", "nodelistonly", "pause", "interval", "datacode", "scale",
                "timestamped", "targeted", "nodeoffset", "batchsize")
"""Runtimesettings every emonhub interfacer accepts (emonhub_interfacer.py ``_defaults``)."""


@dataclass(frozen=True)
class Interfacer:
    """How one emonhub Type runs here.

    ``kind``: ``listeners`` or ``buffers``; ``type``: our plugin type; ``keys``: emonhub key ->
    our key (``""``: understood, nothing to set); ``defaults``: emonhub's value for a key the
    file leaves out, where ours differs (in emonhub's terms, translated like a written one);
    ``fixed``: our settings this Type always means; ``sections``: emonhub sub-sections (Modbus
    meters) passed on under our name.
    """

    kind: str
    type: str
    keys: Mapping[str, str] = field(default_factory=dict)
    defaults: Mapping[str, str] = field(default_factory=dict)
    fixed: Mapping[str, object] = field(default_factory=dict)
    sections: Mapping[str, str] = field(default_factory=dict)


_SERIAL = {"com_port": "com_port", "com_baud": "com_baud"}
_OEM_BOARD_SETTINGS = ("group", "baseid", "frequency", "period", "vcal", "ical1", "ical2", "ical3", "ical4",
                       "acfreq", "m1", "t0", "Vrms")

INTERFACERS: Dict[str, Interfacer] = {
    # serial boards
    "EmonHubOEMInterfacer": Interfacer("listeners", "oemserial", dict(
        _SERIAL, nodename="nodename", group="group", baseid="nodeid", frequency="frequency", period="period",
        vcal="vcal", ical1="ical1", ical2="ical2", ical3="ical3", ical4="ical4", acfreq="acfreq", m1="pulse_period",
        t0="temperature", Vrms="assumedvrms"),
        defaults={"com_port": "/dev/ttyAMA0", "com_baud": "38400"}, fixed={"format": "oem"}),
    "EmonHubJeeInterfacer": Interfacer("listeners", "rfm2pi", dict(
        _SERIAL, group="group", frequency="frequency", baseid="baseid", quiet="quiet", interval="sendtimeinterval"),
        defaults={"com_port": "/dev/ttyAMA0", "com_baud": "38400"}),
    "EmonHubSerialInterfacer": Interfacer("listeners", "serial", _SERIAL, defaults={"com_port": "", "com_baud": "9600"},
                                          fixed={"format": "nodeid_values"}),
    "EmonHubTx3eInterfacer": Interfacer("listeners", "serial", dict(_SERIAL, nodename="nodename"),
                                        defaults={"com_port": "", "com_baud": "9600"}),
    # network
    "EmonHubSocketInterfacer": Interfacer("listeners", "socket", {"port_nb": "port"}, defaults={"port_nb": "50011"},
                                          fixed={"bind": "0.0.0.0"}),   # emonhub listens on every interface
    # outputs
    "EmonHubMqttInterfacer": Interfacer("buffers", "mqtt", {
        "mqtt_host": "host", "mqtt_port": "port", "mqtt_user": "username", "mqtt_passwd": "password",
        "mqtt_tls_enabled": "tls", "mqtt_tls_ca_certs": "ca_file", "mqtt_tls_certfile": "certfile",
        "mqtt_tls_keyfile": "keyfile", "mqtt_tls_insecure": "verify_tls",
        "node_format_enable": "", "node_format_basetopic": "", "nodevar_format_enable": "",
        "nodevar_format_basetopic": "", "node_JSON_enable": "", "node_JSON_basetopic": ""},
        fixed={"status_topic": "", "emonhub_payloads": True}),
    "EmonHubEmoncmsHTTPInterfacer": Interfacer("buffers", "emoncms", {
        "url": "url", "apikey": "apikey", "senddata": "active", "sendnames": "send_names", "compress": "",
        "batchsize": "batch_size"}, defaults={"url": "http://emoncms.org", "sendnames": "0"}),
    "EmonHubInfluxInterfacer": Interfacer("buffers", "influxdb", {
        "influx_host": "", "influx_port": "", "influx_user": "username", "influx_passwd": "password",
        "influx_db": "database"}, defaults={"influx_user": "emoncms", "influx_passwd": "emoncmspw",
                                            "influx_db": "emoncms"}, fixed={"api": "v1"}),
    # device listeners (their plugins are added type by type; until one is, its Type is warned about)
    "EmonHubRFM69LPLInterfacer": Interfacer("listeners", "rfm69", {
        "nodeid": "nodeid", "networkID": "group", "freqBand": "frequency", "interruptPin": "irq_pin",
        "selPin": "cs_pin", "resetPin": "reset_pin"},
        fixed={"radio_format": "lpl", "pin_numbering": "header"}),   # emonhub's pins are header pins
    "EmonHubRF69Interfacer": Interfacer("listeners", "rfm69", {"nodeid": "nodeid", "group": "group"},
                                        fixed={"radio_format": "jeelib", "spi_device": 1, "cs_pin": "23"}),
    "EmonHubMinimalModbusInterfacer": Interfacer("listeners", "modbus", {
        "device": "device", "device_vid": "usb_vid", "device_pid": "usb_pid", "baud": "baud", "parity": "parity",
        "datatype": "datatype", "read_interval": "interval", "nodename": "nodename"}, sections={"meters": "meters"}),
    "EmonHubSDM120Interfacer": Interfacer("listeners", "modbus", {
        "device": "device", "baud": "baud", "read_interval": "interval", "nodename": "nodename", "names": "names",
        "datafields": "registers", "precision": "precision"}, fixed={"meter": "sdm120"}),
    "EmonModbusTcpInterfacer": Interfacer("listeners", "modbus", {
        "modbus_IP": "host", "modbus_port": "port", "nodeId": "node", "register": "registers", "names": "names",
        "datacode": "datacode", "datacodes": "datacodes", "scales": "scales"}),
    "EmonHubMBUSInterfacer": Interfacer("listeners", "mbus", {
        "device": "device", "device_vid": "usb_vid", "device_pid": "usb_pid", "baud": "baud",
        "use_meterbus_lib": "", "read_interval": "interval", "nodename": "nodename",
        "validate_checksum": "validate_checksum"}, sections={"meters": "meters"}),
    "EmonHubDS18B20Interfacer": Interfacer("listeners", "ds18b20", {
        "read_interval": "interval", "nodename": "nodename", "ids": "ids", "names": "names"}),
    "EmonHubPulseCounterInterfacer": Interfacer("listeners", "pulse", {
        "pulse_pin": "pin", "bouncetime": "debounce_ms", "rate_limit": "rate_limit"},
        fixed={"pin_numbering": "board"}),   # emonhub's pins are the header's (RPi.GPIO BOARD)
    "EmonHubDigitalInputInterfacer": Interfacer("listeners", "gpio", {
        "pins": "pins", "invert": "invert", "read_interval": "interval", "nodename": "nodename"},
        fixed={"pin_numbering": "board"}),
    # (emonhub has no MQTT input interfacer: its MQTT interfacer's TX subscription is the mqtt
    # buffer's tx_topic here. The gateway's own "mqtt" listener has no emonhub counterpart.)
}
"""emonhub Type -> how it runs here. Keys a Type has that are not listed (and not generic)
are warned about and ignored."""

UNSUPPORTED: Dict[str, str] = {
    "EmonHubGraphiteInterfacer": "Graphite output",
    "EmonHubRedisInterfacer": "Redis output",
    "EmonHubModbusRenogyInterfacer": "Renogy charge controller",
    "EmonHubSDS011Interfacer": "SDS011 particulate sensor",
    "EmonHubVEDirectInterfacer": "Victron VE.Direct",
    "EmonHubTeslaPowerWallInterfacer": "Tesla Powerwall",
    "EmonHubEconet300Interfacer": "Econet300",
    "EmonHubEconextInterfacer": "Econext",
    "EmonHubGoodWeInterfacer": "GoodWe inverter",
    "EmonHubSMASolarInterfacer": "SMA Solar inverter",
    "EmonHubBleInterfacer": "Bluetooth LE sensors",
    "EmonHubBMWInterfacer": "BMW car API",
    "EmonHubJaguarLandRoverInterfacer": "Jaguar Land Rover car API",
    "EmonHubPacketGenInterfacer": "packet generator",
    "EmonHubSunampInterfacer": "Sunamp heat battery",
    "EmonHubTemplateInterfacer": "template for new interfacers",
}
"""emonhub Types with no counterpart in the gateway (yet)."""
UNSUPPORTED_OUTPUTS = ("EmonHubGraphiteInterfacer", "EmonHubRedisInterfacer")

_PLACEHOLDER_KEY = re.compile(r"^x+$", re.IGNORECASE)
_TRUE = ("1", "true", "yes", "on")


# -- the translation ----------------------------------------------------------------------
@dataclass
class Translation:
    """The gateway's config for an emonhub file: ``config`` (a ConfigObj of our sections),
    ``warnings`` (``(emonhub section path, key or None, message)``), and where each of our
    sections and settings came from (``origins``: our path and key -> emonhub's), for line
    numbers in messages."""

    config: ConfigObj
    warnings: List[Tuple[Path, Optional[str], str]] = field(default_factory=list)
    origins: Dict[Tuple[Path, Optional[str]], Tuple[Path, Optional[str]]] = field(default_factory=dict)
    left_out: List[Tuple[str, str, str]] = field(default_factory=list)   # name, Type, why

    def warn(self, where: Path, key: Optional[str], message: str) -> None:
        self.warnings.append((where, key, message))


def is_emonhub_config(raw: Mapping) -> bool:
    """An emonhub file has ``[hub]`` or ``[interfacers]``, and none of our sections (a file
    with both is ours, and its emonhub sections are warned about as unknown)."""
    ours = ("gateway", "listeners", "buffers")
    return any(isinstance(raw.get(name), Section) for name in ("hub", "interfacers")) and \
        not any(name in raw for name in ours)


def translate(raw: ConfigObj, available: Callable[[str, str], Optional[type]]) -> Translation:
    """Our config for the emonhub config ``raw``. ``available(kind, type)`` gives the plugin
    class of one of our types, or None when this version has no such plugin."""
    out = ConfigObj(interpolation=False)
    out.initial_comment = list(raw.initial_comment)
    out.final_comment = list(raw.final_comment)
    result = Translation(out)
    _translate_hub(raw, result)
    for kind in ("listeners", "buffers"):
        out[kind] = {}
    interfacers = raw.get("interfacers")
    if isinstance(interfacers, Section):
        _carry_comments(raw, "interfacers", out, "listeners")
        channels = _Channels()
        for name in interfacers.sections:
            _translate_interfacer(name, interfacers[name], available, result, channels)
        channels.route(result)
    if isinstance(raw.get("nodes"), Section):
        out["nodes"] = {}
        _copy_section(raw["nodes"], out["nodes"])
        _carry_comments(raw, "nodes", out, "nodes")
        result.origins[(("nodes",), None)] = (("nodes",), None)
    for name in raw.sections:
        if name not in ("hub", "interfacers", "nodes"):
            result.warn((name,), None, f"[{name}] is not a section of emonhub.conf and is ignored")
    return result


def _translate_hub(raw: ConfigObj, result: Translation) -> None:
    hub = raw.get("hub") if isinstance(raw.get("hub"), Section) else {}
    gateway = {"emonhub_values": "True"}   # whole numbers as ints, missed/missedprc inputs
    for key, value in hub.items():
        if isinstance(value, Section):
            result.warn(("hub",), None, f"[[{key}]] is not read in [hub] and is ignored")
            continue
        ours = HUB_KEYS.get(key)
        if ours is None:
            result.warn(("hub",), key, f"'{key}' is not an emonhub [hub] setting the gateway knows; ignored")
            continue
        if key == "log_max_bytes":
            value = _number_text(value, lambda n: max(0.01, n / 1048576))
        elif key in ("autoconf", "use_syslog"):
            value = str(_is_true(value))
        gateway[ours] = value
        result.origins[(("gateway",), ours)] = (("hub",), key)
    result.config["gateway"] = gateway
    if isinstance(raw.get("hub"), Section):
        _carry_comments(raw, "hub", result.config, "gateway")
        _carry_key_comments(raw["hub"], result.config["gateway"], HUB_KEYS)
        result.origins[(("gateway",), None)] = (("hub",), None)


class _Channels:
    """emonhub's channels: who publishes and who subscribes to which, for routing."""

    def __init__(self):
        self.listeners: Dict[str, Tuple[set, set]] = {}   # name -> (pubchannels, subchannels)
        self.buffers: Dict[str, Tuple[set, set, Path]] = {}
        self.left_out: Dict[str, set] = {}   # inputs that do not run here -> their pubchannels

    def route(self, result: Translation) -> None:
        """``from_listeners`` of each buffer and ``tx_listener`` of MQTT buffers."""
        buffers = result.config["buffers"]
        everyone = sorted(self.listeners)
        for name, (pub, sub, where) in self.buffers.items():
            section = buffers[name]
            takes = [n for n in everyone if self.listeners[n][0] & sub]
            left_out = sorted(n for n, channels in self.left_out.items() if channels & sub)
            if not takes and not left_out:
                why = "subscribes to no channel" if not sub else \
                    f"no input publishes on its subchannels ({', '.join(sorted(sub))})"
                result.warn(where, "subchannels", f"{why}: it receives nothing (as in emonhub); "
                            "the buffer is made inactive")
                section["active"] = "False"
            elif not takes:
                result.warn(where, "subchannels", f"the inputs it takes ({', '.join(left_out)}) do not run in "
                            "this version: it receives nothing for now")
                if everyone:
                    section["active"] = "False"
            elif takes != everyone:
                section["from_listeners"] = takes
            if section.get("type") != "mqtt":
                continue
            radios = [n for n in everyone if self.listeners[n][1] & pub]
            if not radios:
                section["tx_topic"] = ""   # no input takes what it publishes: no TX
            elif len(radios) == 1:
                section["tx_listener"] = radios[0]


def _translate_interfacer(name: str, section: Section, available, result: Translation, channels: _Channels):
    where: Path = ("interfacers", name)
    if _run_interfacer(name, section, where, available, result, channels) is None:
        mapping = INTERFACERS.get(str(section.get("Type", "")).strip())
        is_input = mapping.kind == "listeners" if mapping else section.get("Type") not in UNSUPPORTED_OUTPUTS
        runtime = section.get("runtimesettings")
        if is_input and isinstance(runtime, Section):
            channels.left_out[name] = set(_as_list(runtime.get("pubchannels")))


def _run_interfacer(name: str, section: Section, where: Path, available, result: Translation,
                    channels: _Channels) -> Optional[bool]:
    """Translate one interfacer; None if it cannot run here (said in a warning)."""
    type_name = section.get("Type")
    if not isinstance(type_name, str) or not type_name.strip():
        result.warn(where, None, "has no Type: emonhub would not run it either; ignored")
        result.left_out.append((name, "", "no Type"))
        return None
    type_name = type_name.strip()
    mapping = INTERFACERS.get(type_name)
    if mapping is None:
        what = UNSUPPORTED.get(type_name)
        why = f"the gateway has no {what} ({type_name})" if what else \
            f"Type = {type_name} is not an emonhub interfacer the gateway knows"
        result.warn(where, "Type", f"{why}: this interfacer is not run; the rest of the file is")
        result.left_out.append((name, type_name, why))
        return None
    try:
        cls = available(mapping.kind, mapping.type)
        why = (f"{type_name} runs as a '{mapping.type}' {mapping.kind[:-1]}, which this version of the "
               "gateway does not have yet")
    except ImportError as exc:   # a device library missing here: the rest of the file still runs
        cls, why = None, (f"{type_name} runs as a '{mapping.type}' {mapping.kind[:-1]}, which needs the "
                          f"Python package '{exc.name or exc}', not installed here")
    if cls is None:
        result.warn(where, "Type", f"{why}: this interfacer is not run; the rest of the file is")
        result.left_out.append((name, type_name, why))
        return None
    settings, origins = _interfacer_settings(where, section, result)
    ours: Dict[str, object] = {"type": mapping.type}
    known = set(_spec_keys(cls)) | {"type"}
    for key in mapping.defaults:
        if key not in settings:
            settings[key] = mapping.defaults[key]
    special = _SPECIAL.get(mapping.type, lambda s, o, w, r: {})
    ours.update(special(settings, origins, where, result))
    for key, value in settings.items():
        at = origins.get(key, (where, None))
        if key in GENERIC_KEYS:
            _generic(key, value, mapping, at, ours, result)
            continue
        if key not in mapping.keys:
            if isinstance(value, dict) and key in mapping.sections:
                ours[mapping.sections[key]] = value
                continue
            if mapping.type == "serial" and key in _OEM_BOARD_SETTINGS:
                result.warn(at[0], key, f"'{key}' (a setting emonhub sends to the board) is not sent by "
                            "this version: set it on the board itself; ignored")
                continue
            result.warn(at[0], key, f"'{key}' is not a setting of {type_name} the gateway knows; ignored")
            continue
        target = mapping.keys[key]
        if not target:
            continue   # understood; what it means is taken care of above
        if target not in known:
            result.warn(at[0], key, f"'{key}' has no counterpart in '{mapping.type}' {mapping.kind} of this "
                        "version; ignored")
            continue
        ours[target] = value
        result.origins[((mapping.kind, name), target)] = at
    for key, value in mapping.fixed.items():
        if key in known:
            ours.setdefault(key, value)
    result.config[mapping.kind][name] = ours
    result.origins[((mapping.kind, name), None)] = (where, None)
    result.origins[((mapping.kind, name), "type")] = (where, "Type")
    _carry_comments(section.parent, name, result.config[mapping.kind], name)
    for sub in ("init_settings", "runtimesettings"):
        if isinstance(section.get(sub), Section):
            _carry_key_comments(section[sub], result.config[mapping.kind][name], mapping.keys)
    pub = set(_as_list(settings.get("pubchannels")))
    sub = set(_as_list(settings.get("subchannels")))
    if mapping.kind == "listeners":
        channels.listeners[name] = (pub, sub)
    else:
        channels.buffers[name] = (pub, sub, origins.get("subchannels", (where, None))[0])
    return True


def _interfacer_settings(where: Path, section: Section, result: Translation):
    """Every setting of an interfacer (init and runtime together), and where each was."""
    settings: Dict[str, object] = {}
    origins: Dict[str, Tuple[Path, str]] = {}
    for sub in ("init_settings", "runtimesettings"):
        part = section.get(sub)
        if part is None:
            continue   # emonhub needs both; here a missing one is simply empty
        if not isinstance(part, Section):
            result.warn(where, sub, f"{sub} must be a section [[[{sub}]]]; ignored")
            continue
        for key, value in part.items():
            if key in settings:
                result.warn(where + (sub,), key, f"'{key}' is set in both init_settings and runtimesettings: "
                            "the runtimesettings value is used")
            settings[key] = value.dict() if isinstance(value, Section) else value
            origins[key] = (where + (sub,), key)
    for key, value in section.items():
        if key in ("Type", "init_settings", "runtimesettings"):
            continue
        result.warn(where, key, f"'{key}' is outside init_settings and runtimesettings; emonhub does not "
                    "read it there either; ignored")
    return settings, origins


def _generic(key: str, value, mapping: Interfacer, at, ours: dict, result: Translation) -> None:
    """The runtimesettings every emonhub interfacer has."""
    if key in ("pubchannels", "subchannels"):
        return   # routing: see _Channels
    if key == "nodelistonly":
        if mapping.kind == "listeners":
            ours["nodelistonly"] = str(_is_true(value))
        return
    if key == "batchsize":
        if mapping.kind == "buffers":
            ours["batch_size"] = value
        return
    if key == "interval":
        if mapping.type == "rfm2pi":
            ours["sendtimeinterval"] = value
        elif mapping.kind == "buffers":
            result.warn(at[0], key, "the gateway sends each reading at once (and a backlog in "
                        "batches), so it is not needed; ignored")
        return
    if key == "pause":
        if str(value).strip().lower() in ("all", "in", "out"):
            if mapping.kind == "buffers" and str(value).strip().lower() in ("all", "out"):
                ours["active"] = "False"
            else:
                result.warn(at[0], key, f"pause = {value}: pausing an input is not supported; ignored")
        return
    if key == "datacode" and mapping.kind == "listeners" and str(value).strip() in ("h", "0"):
        return   # what the gateway does anyway: radio bytes as int16, text numbers as sent
    if key == "scale" and str(value).strip() in ("1", "1.0"):
        return
    if key in ("timestamped", "targeted") and not _is_true(value):
        return
    if key == "nodeoffset" and str(value).strip() in ("0", ""):
        return
    result.warn(at[0], key, f"{key} = {_shown(value)} is not supported; ignored")


# -- per-type meanings that need more than a rename --------------------------------------
def _mqtt(settings: dict, origins, where, result: Translation) -> dict:
    """emonhub's three MQTT formats (enable flags and base topics) as ours."""
    def enabled(key, default):
        return _is_true(settings.get(key, default))

    def base(key, default):
        return str(settings.get(key, default)).strip().rstrip("/")

    formats, ours = [], {}   # in emonhub's order of publishing
    if enabled("nodevar_format_enable", "0"):
        formats.append("nodevar")
    if enabled("node_format_enable", "1"):
        formats.append("csv")
    if enabled("node_JSON_enable", "0"):
        formats.append("json")
    nodevar_base, json_base = base("nodevar_format_basetopic", "nodes/"), base("node_JSON_basetopic", "emon/")
    if "nodevar" in formats and "json" in formats and nodevar_base != json_base:
        result.warn(where, "node_JSON_basetopic", f"the JSON format under {json_base}/ and the nodevar format "
                    f"under {nodevar_base}/: one buffer has one base topic, so JSON is published under "
                    f"{nodevar_base}/; set both base topics alike to keep topics as they are")
    ours["base_topic"] = nodevar_base if "nodevar" in formats else json_base
    node_base = base("node_format_basetopic", "emonhub/")
    ours["csv_base_topic"] = node_base
    ours["tx_topic"] = f"{node_base}/tx/{{node}}/values"
    ours["formats"] = formats or ["csv"]
    if not formats:
        result.warn(where, "node_format_enable", "every MQTT format is disabled: nothing would be published; "
                    "the buffer is made inactive")
        ours["active"] = "False"
    for key, our_key in (("mqtt_user", "username"), ("mqtt_passwd", "password")):
        if key in settings and not str(settings[key]).strip():
            settings[key] = ""   # emonhub's default is one space: no login
    if "mqtt_tls_insecure" in settings:
        settings["mqtt_tls_insecure"] = str(not _is_true(settings["mqtt_tls_insecure"]))
    for key in ("mqtt_tls_enabled",):
        if key in settings:
            settings[key] = str(_is_true(settings[key]))
    ours["qos"] = "1"   # emonhub publishes with QoS 2; QoS 1 is the highest here (receivers see no difference)
    return ours


def _emoncms(settings: dict, origins, where, result: Translation) -> dict:
    key = str(settings.get("apikey", "")).strip()
    if _PLACEHOLDER_KEY.match(key):
        result.warn(origins.get("apikey", (where, None))[0], "apikey", "apikey is the x placeholder: emonhub "
                    "discards the data, the gateway keeps the buffer inactive until a key is filled in")
        settings["apikey"] = ""
    for flag in ("senddata", "sendnames"):
        if flag in settings:
            settings[flag] = str(_is_true(settings[flag]))
    if _is_true(settings.pop("sendstatus", "0")):
        result.warn(origins.get("sendstatus", (where, None))[0], "sendstatus", "sendstatus = 1 (emoncms' myip) is not supported; ignored")
    return {}


def _influxdb(settings: dict, origins, where, result: Translation) -> dict:
    host = str(settings.get("influx_host", "localhost")).strip("[']")
    port = str(settings.get("influx_port", "8086")).strip("[']")
    result.warn(where, "Type", "InfluxDB: the gateway writes one series per node with a field per input "
                "(measurement 'emon', tag 'node'); emonhub wrote one measurement per input name")
    prefix = settings.pop("prefix", None)
    if prefix is not None:
        result.warn(where, "prefix", "prefix (a tag of emonhub's series) is not written; ignored")
    return {"url": f"http://{host}:{port}"}


_SPECIAL: Dict[str, Callable[[dict, dict, Path, Translation], dict]] = {
    "mqtt": _mqtt, "emoncms": _emoncms, "influxdb": _influxdb}


# -- helpers ----------------------------------------------------------------------------------
def _spec_keys(cls) -> List[str]:
    spec = cls.settings_spec() if hasattr(cls, "settings_spec") else ""
    return [line.split("=", 1)[0].strip() for line in spec.splitlines() if "=" in line]


def _is_true(value) -> bool:
    if isinstance(value, (list, tuple)):
        value = value[0] if value else ""
    return str(value).strip().lower() in _TRUE


def _as_list(value) -> List[str]:
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def _shown(value) -> str:
    return ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _number_text(value, convert) -> str:
    try:
        return repr(round(convert(float(value)), 3))
    except (TypeError, ValueError):
        return str(value)   # the gateway's own check reports it


def _copy_section(source: Section, target: Section) -> None:
    """Copy ``source`` into ``target`` with the comments of every key and sub-section."""
    for key, value in source.items():
        if isinstance(value, Section):
            target[key] = {}
            _copy_section(value, target[key])
        else:
            target[key] = value
        target.comments[key] = list(source.comments.get(key, []))
        target.inline_comments[key] = source.inline_comments.get(key)


def _carry_comments(source_parent: Section, source_key: str, target_parent: Section, target_key: str) -> None:
    """The comment lines above a section (or key), and its inline comment, onto ours."""
    if target_key not in target_parent:
        return
    comments = [line for line in source_parent.comments.get(source_key, []) if line.strip()]
    if comments and not target_parent.comments.get(target_key):
        target_parent.comments[target_key] = comments
    inline = source_parent.inline_comments.get(source_key)
    if inline and not target_parent.inline_comments.get(target_key):
        target_parent.inline_comments[target_key] = inline.strip()


def _carry_key_comments(source: Section, target: Section, keys: Mapping[str, str]) -> None:
    for key in source.scalars:
        ours = keys.get(key)
        if ours and ours in target:
            _carry_comments(source, key, target, ours)


# -- writing the converted file ---------------------------------------------------------
HEADER = ["# oemgateway.conf converted from emonhub.conf ({path}) by oemgateway --convert-emonhub.",
          "# Settings are the gateway's own (see the README); comments are kept where they map.", "#"]


def convert(path: str, raw: ConfigObj, translation: Translation) -> str:
    """The converted file's text: the translation, a header, and what could not be converted
    (each interfacer left out, as comments, with why)."""
    config = translation.config
    config.indent_type = "    "
    config.initial_comment = [line.format(path=path) for line in HEADER] + list(config.initial_comment)
    if not config["listeners"]:
        config.comments["listeners"] = ["", "# (no input of the emonhub file runs in this version)"]
    lines = config.write()
    if translation.left_out:
        lines += ["", "# Not converted (emonhub interfacers that do not run in this version):"]
        interfacers = raw.get("interfacers") if isinstance(raw.get("interfacers"), Section) else {}
        for name, type_name, why in translation.left_out:
            lines.append(f"#   [[{name}]] {why}")
            section = interfacers.get(name)
            if isinstance(section, Section):
                lines += ["#     " + line for line in _section_lines(section)]
    if translation.warnings:
        lines += ["", "# Notes from the conversion:"]
        lines += [f"#   {_label(where)}{' ' + key if key else ''}: {message}"
                  for where, key, message in translation.warnings]
    return "\n".join(lines) + "\n"


def _section_lines(section: Section) -> List[str]:
    copy = ConfigObj(interpolation=False)
    copy.merge(section.dict())
    return [line for line in copy.write() if line.strip()]


def _label(path: Path) -> str:
    return " ".join("[" * depth + name + "]" * depth for depth, name in enumerate(path, 1))


def convert_file(path: str, loader, out=None) -> int:
    """``oemgateway --convert-emonhub FILE``: print the converted file; problems and notes go
    to stderr. Returns the exit code: 0 converted, 1 the file cannot be read or is not an
    emonhub.conf."""
    import sys
    from configobj import ConfigObjError
    out = out or sys.stdout
    try:
        raw = ConfigObj(path, file_error=True, interpolation=False, encoding="utf-8")
    except (OSError, ConfigObjError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(f"oemgateway: {path}: cannot read it as an emonhub.conf: {reason}", file=sys.stderr)
        return 1
    if not is_emonhub_config(raw):
        print(f"oemgateway: {path}: not an emonhub.conf (it has neither [hub] nor [interfacers])",
              file=sys.stderr)
        return 1
    translation = translate(raw, loader.available)
    for where, key, message in translation.warnings:
        print(f"note: {_label(where)}{' ' + key if key else ''}: {message}", file=sys.stderr)
    out.write(convert(path, raw, translation))
    return 0
