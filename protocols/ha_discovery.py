"""Home Assistant MQTT discovery: the retained messages that make every node a device and every
input a sensor in Home Assistant, with the classes its Energy dashboard needs.

Pure: no MQTT here. The MQTT buffer feeds ``Discovery.observe()`` each frame it publishes and
publishes (retained) the messages it returns *before* the frame's own messages; it calls
``republish()`` when Home Assistant announces ``online`` on ``homeassistant/status``, and
``remove()`` when a node leaves the config. ``validate()`` checks a message against Home
Assistant's documented discovery schema; the tests run every message through it.

What the messages say, and why:

* **State topics are the nodevar topics** ``<base>/<node>/<input>`` (one plain number each),
  which the MQTT buffer already publishes and which emonhub users' hand-written Home Assistant
  YAML reads. Not the JSON topic ``<base>/<node>``: it carries every reading of a backlog with
  its time, and Home Assistant stamps a state with its arrival, so the buffer sends Home
  Assistant only the latest value per input after a replay, on these topics, while the JSON
  topics and emoncms get the whole history.
* **Classes follow the input's unit** (``[nodes]`` units, built-in node templates, device
  presets), through ``classify()``: W is power/measurement, Wh and kWh energy/total_increasing
  (the Energy dashboard's sources), V voltage, A current, Hz frequency, °C temperature, dBm
  signal strength, m³ volume/total_increasing (a heat meter's water is not the house's water
  or gas: Home Assistant's ``volume`` class says only what is known; a user who knows it meters
  gas or water sets that class), m³/h volume_flow_rate. A unit Home Assistant gives no class to
  (K as a temperature *difference*, pulses ``p``, counts ``n``) or one this table does not know
  gets no device class and no state class rather than a wrong one. Units are normalised first:
  emonhub's ``C`` is ``°C``, ``m3`` is ``m³``, ``kwh`` is ``kWh``.
* **One device per node** (``via_device`` the gateway's own device, which has a connectivity
  sensor on the gateway's status topic), **availability** from that status topic
  (``online``/``offline``, the MQTT buffer's last will), and ``expire_after`` for radio nodes:
  five times the node's usual interval, learnt from its first frames (a radio node routinely
  misses a packet or two; after five, it is shown unavailable). A node's config is published
  again once, when the interval is learnt.
* **Device discovery** (``style = device``, Home Assistant 2024.11 and later): one retained
  message per node holds all its sensors. ``style = entity`` publishes one message per input
  instead, for older Home Assistant. No ``object_id``/``default_entity_id`` is sent: Home
  Assistant names the entity from the device and input names (``sensor.emontx4_17_p1``) in
  every release, while the former key stops working in 2026.4 and the latter is unknown
  before 2025.10.
* IDs: ``oemgw_<gateway_id>_<node>_<input>``, stable and never reused. Characters outside
  ``[A-Za-z0-9_-]`` (emonTH's ``external temperature``) become ``_`` and the ID gets a short
  hash of the real name, so two names never share an ID.
"""

import hashlib
import json
import math
import re
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

from gateway import __version__
from gateway.frame import Frame, Node

Message = Tuple[str, str]      # topic, payload ("" deletes); every discovery message is retained
HA_STATUS_TOPIC = "homeassistant/status"
ONLINE, OFFLINE = "online", "offline"
STYLES = ("device", "entity")
_SLUG = re.compile(r"[^A-Za-z0-9_-]")
_OBJECT_ID = re.compile(r"[A-Za-z0-9_-]+")


# -- units and classes ----------------------------------------------------------------------
@dataclass(frozen=True)
class SensorClass:
    """How Home Assistant should see one input."""

    device_class: Optional[str] = None
    state_class: Optional[str] = None
    unit: Optional[str] = None            # unit_of_measurement
    precision: Optional[int] = None       # suggested_display_precision
    diagnostic: bool = False              # entity_category: diagnostic
    enabled: bool = True                  # enabled_by_default


M, TI = "measurement", "total_increasing"
UNIT_CLASSES: Dict[str, SensorClass] = {
    "W": SensorClass("power", M, "W", 0),
    "kW": SensorClass("power", M, "kW", 2),
    "VA": SensorClass("apparent_power", M, "VA", 0),
    "var": SensorClass("reactive_power", M, "var", 0),
    "Wh": SensorClass("energy", TI, "Wh", 0),
    "kWh": SensorClass("energy", TI, "kWh", 2),
    "MWh": SensorClass("energy", TI, "MWh", 3),
    "MJ": SensorClass("energy", TI, "MJ", 1),
    "GJ": SensorClass("energy", TI, "GJ", 3),
    "V": SensorClass("voltage", M, "V", 1),
    "mV": SensorClass("voltage", M, "mV", 0),
    "A": SensorClass("current", M, "A", 2),
    "mA": SensorClass("current", M, "mA", 0),
    "Hz": SensorClass("frequency", M, "Hz", 2),
    "°C": SensorClass("temperature", M, "°C", 1),
    "°F": SensorClass("temperature", M, "°F", 1),
    "dBm": SensorClass("signal_strength", M, "dBm", 0, diagnostic=True),
    "m³": SensorClass("volume", TI, "m³", 3),
    "L": SensorClass("volume", TI, "L", 0),
    "m³/h": SensorClass("volume_flow_rate", M, "m³/h", 3),
    "L/min": SensorClass("volume_flow_rate", M, "L/min", 1),
    "s": SensorClass("duration", M, "s", 0),
    "min": SensorClass("duration", M, "min", 0),
    "h": SensorClass("duration", M, "h", 1),
    "d": SensorClass("duration", M, "d", 1),
    "Pa": SensorClass("pressure", M, "Pa", 0),
    "hPa": SensorClass("pressure", M, "hPa", 1),
    "kPa": SensorClass("pressure", M, "kPa", 2),
    "bar": SensorClass("pressure", M, "bar", 2),
    "mbar": SensorClass("pressure", M, "mbar", 0),
    "psi": SensorClass("pressure", M, "psi", 1),
    "lx": SensorClass("illuminance", M, "lx", 0),
    "W/m²": SensorClass("irradiance", M, "W/m²", 0),
}
"""Units with a Home Assistant device class, as Home Assistant writes them. Only units every
release since 2024.1 accepts for the class: kVA, kvar, L/h and the like (accepted by newer
releases only) are published without a class (see ``classify``)."""

_PLAIN_UNITS = {"K", "%", "dB", "p", "n", "kVA", "kvar", "varh", "kvarh", "L/h", "ppm"}
"""Units known here that get no device class: K is a temperature difference (as a
``temperature`` Home Assistant would convert 5 K to -268 °C), ``%`` depends on the input
(see ``classify``), ``p`` counts pulses, ``n`` messages; the rest are units only newer Home
Assistant releases accept for a class."""

_ALIASES = {
    # emonhub and hand-written spellings, looked up in lower case: only spellings that mean
    # one unit whatever their case (mW and MW, mV and MV, mWh and MWh keep their case).
    "c": "°C", "°c": "°C", "ºc": "°C", "degc": "°C", "deg c": "°C", "celsius": "°C",
    "f": "°F", "°f": "°F", "ºf": "°F", "degf": "°F", "fahrenheit": "°F", "kelvin": "K",
    "w": "W", "watt": "W", "watts": "W", "kw": "kW",
    "wh": "Wh", "kwh": "kWh", "mj": "MJ", "gj": "GJ",
    "va": "VA", "kva": "kVA", "var": "var", "kvar": "kvar", "varh": "varh", "kvarh": "kvarh",
    "v": "V", "volt": "V", "volts": "V", "a": "A", "amp": "A", "amps": "A", "ma": "mA",
    "hz": "Hz", "%": "%", "pct": "%", "percent": "%", "db": "dB", "dbm": "dBm",
    "m3": "m³", "m^3": "m³", "m³": "m³", "l": "L", "litre": "L", "litres": "L", "liter": "L",
    "liters": "L", "m3/h": "m³/h", "m^3/h": "m³/h", "m³/h": "m³/h", "m3/hr": "m³/h",
    "l/min": "L/min", "lpm": "L/min", "l/h": "L/h",
    "s": "s", "sec": "s", "secs": "s", "min": "min", "mins": "min", "h": "h", "hr": "h",
    "hrs": "h", "hours": "h", "d": "d", "days": "d",
    "pa": "Pa", "hpa": "hPa", "kpa": "kPa", "bar": "bar", "mbar": "mbar", "psi": "psi",
    "lx": "lx", "lux": "lx", "w/m2": "W/m²", "w/m²": "W/m²", "ppm": "ppm",
    "p": "p", "pulse": "p", "pulses": "p", "n": "n",
}
_EXACT = {"K", "MW", "mW", "MWh", "mWh", "mV", "MV", "kV", "mA"}


def normalise_unit(text: Optional[str]) -> Optional[str]:
    """A unit as Home Assistant writes it (``C`` -> ``°C``, ``kwh`` -> ``kWh``, ``m3`` -> ``m³``),
    the text itself (stripped) when it is not one known here, None for none."""
    if text is None:
        return None
    unit = str(text).strip()
    if not unit:
        return None
    if unit in _EXACT or unit in UNIT_CLASSES:
        return unit
    return _ALIASES.get(unit.lower(), unit)


def classify(name: str, unit: Optional[str]) -> SensorClass:
    """Device class, state class and unit for input ``name`` with ``unit`` (any spelling)."""
    lower = name.lower()
    unit = normalise_unit(unit)
    if lower == "rssi":
        return UNIT_CLASSES["dBm"]
    if lower in ("msg", "missed", "missedprc") or (unit == "n" and lower.startswith("msg")):
        return SensorClass(state_class=TI if lower != "missedprc" else M,
                           unit="%" if lower == "missedprc" else None,
                           diagnostic=True, enabled=False)
    if unit in UNIT_CLASSES:
        return UNIT_CLASSES[unit]
    if unit == "%":
        if "hum" in lower:
            return SensorClass("humidity", M, "%", 0)
        if "batt" in lower:
            return SensorClass("battery", M, "%", 0)
        return SensorClass(unit="%")
    if unit == "p":
        return SensorClass(state_class=TI, precision=0)   # a pulse count: no unit, no class
    if unit == "n":
        return SensorClass()
    return SensorClass(unit=unit)


# -- IDs and topics -------------------------------------------------------------------------
def slug(text: str) -> str:
    """``text`` as an ID part of ``[A-Za-z0-9_-]``; changed names get a short hash of the real
    one, so that ``a b`` and ``a_b`` stay apart."""
    text = str(text)
    cleaned = _SLUG.sub("_", text)
    if cleaned == text and text:
        return text
    return f"{cleaned}_{hashlib.sha1(text.encode('utf-8')).hexdigest()[:6]}"


@dataclass(frozen=True)
class DiscoveryConfig:
    """The settings of discovery (the MQTT buffer's ``ha_*`` keys map onto these)."""

    gateway_id: str                        # stable, unique per gateway (site name or host name)
    prefix: str = "homeassistant"          # Home Assistant's discovery prefix
    base_topic: str = "emon"               # where the nodevar states are: <base>/<node>/<input>
    status_topic: str = "emon/gateway/status"   # the gateway's online/offline (last will)
    style: str = "device"                  # device (HA 2024.11+) or entity (one per input)
    qos: int = 1
    gateway_name: str = "OEM Gateway"
    expire_periods: float = 5.0            # expire_after = this many usual intervals
    min_expire: int = 30                   # ... and never less than this (s)
    learn_frames: int = 4                  # frames seen before the interval is trusted

    def __post_init__(self):
        if not self.gateway_id or _SLUG.search(self.gateway_id):
            raise ValueError(f"gateway id {self.gateway_id!r}: use letters, digits, _ and -")
        if self.style not in STYLES:
            raise ValueError(f"style {self.style!r}: expected one of {', '.join(STYLES)}")

    @property
    def gateway_uid(self) -> str:
        return f"oemgw_{self.gateway_id}"


def state_topic(base: str, node: Node, name: str) -> str:
    """The topic the MQTT buffer's nodevar format publishes an input on."""
    return f"{base.strip('/')}/{node}/{name}"


# -- per-node knowledge ---------------------------------------------------------------------
class _Interval:
    """A node's usual interval: the median of its recent gaps, once enough frames were seen."""

    def __init__(self, frames: int):
        self.needed = max(2, frames) - 1
        self.gaps: deque = deque(maxlen=9)
        self.last: Optional[float] = None

    def observe(self, when: float) -> None:
        if self.last is not None and when > self.last:
            self.gaps.append(when - self.last)
        if self.last is None or when > self.last:
            self.last = when

    @property
    def value(self) -> Optional[float]:
        if len(self.gaps) < self.needed:
            return None
        ordered = sorted(self.gaps)
        return ordered[len(ordered) // 2]


@dataclass
class _Node:
    node: Node
    inputs: "OrderedDict[str, SensorClass]" = field(default_factory=OrderedDict)
    model: Optional[str] = None
    manufacturer: Optional[str] = None
    radio: bool = False
    interval: Optional[_Interval] = None
    fixed_interval: Optional[float] = None
    expire: Optional[int] = None
    announced: Dict[str, str] = field(default_factory=dict)   # topic -> payload last published
    seen: tuple = ()          # the last frame's names and whether it had an RSSI
    dirty: bool = True        # something changed since the payloads were last built


class Discovery:
    """Which nodes and inputs Home Assistant has been told about, and what to tell it next.

    Not thread-safe: call it from the buffer's sender thread only.
    """

    def __init__(self, config: DiscoveryConfig):
        self.config = config
        self._nodes: "OrderedDict[Node, _Node]" = OrderedDict()
        self._gateway_sent = False
        self.published = 0      # discovery messages handed out, for the status

    # -- what the buffer calls ------------------------------------------------------------
    def observe(self, frame: Frame, units: Optional[Mapping[str, Optional[str]]] = None,
                model: Optional[str] = None, manufacturer: Optional[str] = None,
                interval: Optional[float] = None) -> List[Message]:
        """The discovery messages to publish before ``frame``'s own (usually none).

        ``units``: the input names' units (``[nodes]``, a template, a preset); ``model`` and
        ``manufacturer`` describe the node's device (e.g. ``emonTx4``, ``OpenEnergyMonitor``);
        ``interval``: the node's reporting interval in seconds when known from its config (else
        it is learnt from the frames of radio nodes).
        """
        state = self._nodes.get(frame.node)
        if state is None:
            state = self._nodes[frame.node] = _Node(frame.node)
            state.interval = _Interval(self.config.learn_frames)
        seen = (frame.names, len(frame.values), frame.rssi is not None)
        if seen != state.seen:            # the common case, the same inputs again, skips this
            state.seen = seen
            state.radio = state.radio or frame.rssi is not None
            units = units or {}
            for name in frame.named_values():
                if name not in state.inputs:
                    state.inputs[name] = classify(name, units.get(name))
                    state.dirty = True
        for attribute, value in (("model", model), ("manufacturer", manufacturer),
                                 ("fixed_interval", interval)):
            if value and value != getattr(state, attribute):
                setattr(state, attribute, value)
                state.dirty = True
        state.interval.observe(frame.time)
        self._update_expiry(state)
        messages = [] if self._gateway_sent else self.gateway_messages()
        self._gateway_sent = True
        return messages + self._changed(state) if state.dirty else messages

    def republish(self) -> List[Message]:
        """Everything again (Home Assistant published ``online``: it may have lost it all)."""
        messages = self.gateway_messages()
        self._gateway_sent = True
        for state in self._nodes.values():
            state.announced.clear()
            state.dirty = True
            messages += self._changed(state)
        return messages

    def remove(self, node: Node) -> List[Message]:
        """Empty retained payloads that delete ``node``'s device and sensors from Home Assistant."""
        state = self._nodes.pop(node, None)
        topics = list(state.announced) if state is not None else []
        if not topics:
            topics = [self._device_topic(node)] if self.config.style == "device" else []
        self.published += len(topics)
        return [(topic, "") for topic in topics]

    def reclassify(self, nodes: Optional[Iterable[Node]] = None) -> None:
        """Classify the inputs of ``nodes`` (all when None) again from the units given with
        their next frame (after ``[nodes]`` changed); a changed class is then published."""
        for node in list(self._nodes) if nodes is None else nodes:
            state = self._nodes.get(node)
            if state is not None:
                state.inputs.clear()
                state.seen = ()

    def nodes(self) -> List[Node]:
        return list(self._nodes)

    def owner_of(self, topic: str) -> Optional[str]:
        """The node ID part of a discovery topic published by this gateway (for clearing configs
        retained from nodes no longer configured), ``""`` for the gateway's own, else None."""
        levels = topic.split("/")
        if len(levels) < 3 or levels[-1] != "config" or "/".join(levels[:-3]) != self.config.prefix:
            return None
        uid = self.config.gateway_uid
        object_id = levels[-2]
        if object_id in (uid, f"{uid}_status"):
            return ""
        return object_id[len(uid) + 1:] if object_id.startswith(uid + "_") else None

    # -- messages ---------------------------------------------------------------------------
    def gateway_messages(self) -> List[Message]:
        """The gateway's own device, with a connectivity sensor on its status topic."""
        cfg = self.config
        component = {"platform": "binary_sensor", "unique_id": f"{cfg.gateway_uid}_status",
                     "name": "Status", "state_topic": cfg.status_topic, "payload_on": ONLINE,
                     "payload_off": OFFLINE, "device_class": "connectivity",
                     "entity_category": "diagnostic", "qos": cfg.qos}
        device = {"identifiers": [cfg.gateway_uid], "name": cfg.gateway_name,
                  "manufacturer": "OEM Gateway", "model": "OEM Gateway", "sw_version": __version__}
        if cfg.style == "device":
            payload = {"device": device, "origin": self._origin(), "components": {"status": component}}
            topic = f"{cfg.prefix}/device/{cfg.gateway_uid}/config"
        else:
            payload = dict(_without(component, "platform"), device=device, origin=self._origin())
            topic = f"{cfg.prefix}/binary_sensor/{cfg.gateway_uid}_status/config"
        self.published += 1
        return [(topic, _dump(payload))]

    def _changed(self, state: _Node) -> List[Message]:
        messages = []
        for topic, payload in self._payloads(state):
            if state.announced.get(topic) != payload:
                state.announced[topic] = payload
                messages.append((topic, payload))
        state.dirty = False
        self.published += len(messages)
        return messages

    def _payloads(self, state: _Node) -> List[Message]:
        cfg = self.config
        components = OrderedDict((slug(name), self._component(state, name, cls))
                                 for name, cls in state.inputs.items())
        shared = {"availability": [{"topic": cfg.status_topic, "payload_available": ONLINE,
                                    "payload_not_available": OFFLINE}],
                  "qos": cfg.qos}
        device = self._device(state)
        if cfg.style == "device":
            payload = dict(device=device, origin=self._origin(), components=components, **shared)
            return [(self._device_topic(state.node), _dump(payload))]
        return [(f"{cfg.prefix}/sensor/{component['unique_id']}/config",
                 _dump(dict(_without(component, "platform"), device=device,
                            origin=self._origin(), **shared)))
                for component in components.values()]

    def _component(self, state: _Node, name: str, cls: SensorClass) -> dict:
        component = {"platform": "sensor",
                     "unique_id": f"{self.config.gateway_uid}_{slug(state.node)}_{slug(name)}",
                     "name": name,
                     "state_topic": state_topic(self.config.base_topic, state.node, name)}
        for key, value in (("device_class", cls.device_class), ("state_class", cls.state_class),
                           ("unit_of_measurement", cls.unit),
                           ("suggested_display_precision", cls.precision)):
            if value is not None:
                component[key] = value
        if cls.diagnostic:
            component["entity_category"] = "diagnostic"
        if not cls.enabled:
            component["enabled_by_default"] = False
        if state.expire is not None:
            component["expire_after"] = state.expire
        return component

    def _device(self, state: _Node) -> dict:
        device = {"identifiers": [f"{self.config.gateway_uid}_{slug(state.node)}"],
                  "name": str(state.node), "via_device": self.config.gateway_uid}
        if state.manufacturer:
            device["manufacturer"] = state.manufacturer
        if state.model:
            device["model"] = state.model
        return device

    def _origin(self) -> dict:
        return {"name": "OEM Gateway", "sw_version": __version__}

    def _device_topic(self, node: Node) -> str:
        return f"{self.config.prefix}/device/{self.config.gateway_uid}_{slug(node)}/config"

    def _update_expiry(self, state: _Node) -> None:
        """Set ``expire_after`` from the node's interval; change it only when it moved a lot
        (jitter must not re-publish the config)."""
        interval = state.fixed_interval or (state.interval.value if state.radio else None)
        if interval is None:
            return
        expire = max(self.config.min_expire, math.ceil(self.config.expire_periods * interval))
        if state.expire is None or not state.expire / 1.5 <= expire <= state.expire * 1.5:
            state.expire, state.dirty = expire, True


def _without(mapping: dict, key: str) -> dict:
    return {k: v for k, v in mapping.items() if k != key}


def _dump(payload: dict) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


# -- the schema, as Home Assistant documents it ----------------------------------------------
# Device classes and their units and state classes: home-assistant/core
# homeassistant/components/sensor/const.py (DEVICE_CLASS_UNITS, DEVICE_CLASS_STATE_CLASSES),
# for the classes a gateway of meters can publish. ``None`` in a unit set: no unit allowed.
_ENERGY_UNITS = {"J", "kJ", "MJ", "GJ", "mWh", "Wh", "kWh", "MWh", "GWh", "TWh", "cal", "kcal",
                 "Mcal", "Gcal"}
_VOLUME_UNITS = {"mL", "L", "m³", "ft³", "CCF", "fl. oz.", "gal"}
SENSOR_DEVICE_CLASSES: Dict[str, Tuple[set, set]] = {
    "apparent_power": ({"VA"}, {M}),
    "power": ({"W", "kW", "MW", "GW", "TW"}, {M}),
    "reactive_power": ({"var"}, {M}),
    "power_factor": ({"%", None}, {M}),
    "energy": (_ENERGY_UNITS, {"total", TI}),
    "energy_storage": (_ENERGY_UNITS, {M}),
    "voltage": ({"V", "mV", "µV", "kV", "MV"}, {M}),
    "current": ({"A", "mA"}, {M}),
    "frequency": ({"Hz", "kHz", "MHz", "GHz"}, {M}),
    "temperature": ({"°C", "°F", "K"}, {M}),
    "humidity": ({"%"}, {M}),
    "battery": ({"%"}, {M}),
    "moisture": ({"%"}, {M}),
    "signal_strength": ({"dB", "dBm"}, {M}),
    "volume": (_VOLUME_UNITS, {"total", TI}),
    "water": ({"CCF", "ft³", "m³", "gal", "L"}, {"total", TI}),
    "gas": ({"CCF", "ft³", "m³"}, {"total", TI}),
    "volume_flow_rate": ({"m³/h", "m³/s", "ft³/min", "L/h", "L/min", "L/s", "gal/min", "mL/s"}, {M}),
    "duration": ({"d", "h", "min", "s", "ms"}, {M, "total", TI}),
    "pressure": ({"Pa", "hPa", "kPa", "bar", "cbar", "mbar", "mmHg", "inHg", "psi"}, {M}),
    "illuminance": ({"lx"}, {M}),
    "irradiance": ({"W/m²", "BTU/(h⋅ft²)"}, {M}),
}
BINARY_DEVICE_CLASSES = {"connectivity", "problem", "power", "running"}
STATE_CLASSES = {M, "total", TI}

ABBREVIATIONS = {
    "avty": "availability", "avty_mode": "availability_mode", "avty_t": "availability_topic",
    "cmps": "components", "dev": "device", "dev_cla": "device_class", "en": "enabled_by_default",
    "ent_cat": "entity_category", "exp_aft": "expire_after", "frc_upd": "force_update",
    "json_attr_t": "json_attributes_topic", "o": "origin", "p": "platform",
    "pl_avail": "payload_available", "pl_not_avail": "payload_not_available",
    "pl_on": "payload_on", "pl_off": "payload_off", "stat_cla": "state_class",
    "stat_t": "state_topic", "sug_dsp_prc": "suggested_display_precision", "t": "topic",
    "uniq_id": "unique_id", "unit_of_meas": "unit_of_measurement", "val_tpl": "value_template",
}
DEVICE_ABBREVIATIONS = {"ids": "identifiers", "mf": "manufacturer", "mdl": "model",
                        "sw": "sw_version", "hw": "hw_version", "via_dev": "via_device",
                        "cns": "connections", "sa": "suggested_area", "sn": "serial_number",
                        "cu": "configuration_url"}
ORIGIN_ABBREVIATIONS = {"sw": "sw_version", "url": "support_url"}

_COMMON_KEYS = {"platform", "unique_id", "name", "state_topic", "availability",
                "availability_topic", "availability_mode", "payload_available",
                "payload_not_available", "qos", "device", "origin", "entity_category",
                "enabled_by_default", "expire_after", "force_update", "value_template",
                "json_attributes_topic", "icon", "encoding", "device_class"}
SENSOR_KEYS = _COMMON_KEYS | {"state_class", "unit_of_measurement", "suggested_display_precision"}
BINARY_SENSOR_KEYS = _COMMON_KEYS | {"payload_on", "payload_off", "off_delay"}
DEVICE_KEYS = set(DEVICE_ABBREVIATIONS.values()) | {"name"}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
SHARED_KEYS = {"availability", "availability_topic", "availability_mode", "payload_available",
               "payload_not_available", "qos", "state_topic", "encoding", "device", "origin",
               "components"}


def _expand(mapping: Mapping, table: Mapping[str, str], where: str, problems: List[str]) -> dict:
    out = {}
    for key, value in mapping.items():
        full = table.get(key, key)
        if full in out:
            problems.append(f"{where}: {key!r} and {full!r} both given")
        out[full] = value
    return out


def validate(topic: str, payload: str) -> List[str]:
    """What is wrong with one discovery message for Home Assistant (empty: nothing).

    Checks the topic's shape, the JSON, the required keys, the keys' types, the device and
    state classes and the units they allow, and rejects keys Home Assistant does not know for
    the platform (a typo there would be ignored silently by Home Assistant). An empty payload
    is a deletion and valid on a valid topic.
    """
    problems: List[str] = []
    levels = topic.split("/")
    if len(levels) not in (4, 5) or levels[-1] != "config" or not levels[0]:
        return [f"{topic}: not <prefix>/<component>/[<node_id>/]<object_id>/config"]
    component = levels[-3] if len(levels) == 4 else levels[-4]
    for level in levels[-3 if len(levels) == 4 else -4:-1][1:]:
        if not _OBJECT_ID.fullmatch(level):
            problems.append(f"{topic}: {level!r} has characters outside [a-zA-Z0-9_-]")
    if component not in ("device", "sensor", "binary_sensor"):
        problems.append(f"{topic}: component {component!r} is not published by this gateway")
    if payload == "" or problems:
        return problems
    try:
        data = json.loads(payload)
    except ValueError as exc:
        return [f"{topic}: not JSON ({exc})"]
    if not isinstance(data, dict):
        return [f"{topic}: the payload is not a JSON object"]
    data = _expand(data, ABBREVIATIONS, topic, problems)
    if component == "device":
        problems += _validate_device_payload(topic, data)
    else:
        problems += _validate_entity(topic, component, data)
    return problems


def _validate_device_payload(topic: str, data: dict) -> List[str]:
    problems: List[str] = []
    for key in set(data) - SHARED_KEYS:
        problems.append(f"{topic}: {key!r} is not a device-discovery key")
    for key in ("device", "origin", "components"):
        if key not in data:
            problems.append(f"{topic}: {key!r} is required in device discovery")
    components = data.get("components")
    if not isinstance(components, dict) or not components:
        return problems + [f"{topic}: 'components' must be a non-empty object"]
    shared = {k: v for k, v in data.items() if k != "components"}
    for cid, raw in components.items():
        where = f"{topic} [{cid}]"
        if not _OBJECT_ID.fullmatch(str(cid)):
            problems.append(f"{where}: component id has characters outside [a-zA-Z0-9_-]")
        if not isinstance(raw, dict):
            problems.append(f"{where}: not an object")
            continue
        entity = _expand(raw, ABBREVIATIONS, where, problems)
        platform = entity.pop("platform", None)
        if platform not in ("sensor", "binary_sensor"):
            problems.append(f"{where}: 'platform' must be sensor or binary_sensor, not {platform!r}")
            continue
        if "unique_id" not in entity:
            problems.append(f"{where}: every component needs a 'unique_id'")
        merged = dict(shared, **entity)
        problems += _validate_entity(where, platform, merged)
    return problems


def _validate_entity(where: str, platform: str, data: dict) -> List[str]:
    problems: List[str] = []
    data = dict(data)
    data.pop("platform", None)
    allowed = SENSOR_KEYS if platform == "sensor" else BINARY_SENSOR_KEYS
    for key in sorted(set(data) - allowed):
        problems.append(f"{where}: {key!r} is not a {platform} option")
    _require_str(data, "state_topic", where, problems, required=True)
    if isinstance(data.get("state_topic"), str) and any(c in data["state_topic"] for c in "+#"):
        problems.append(f"{where}: state_topic has a wildcard")
    _require_str(data, "unique_id", where, problems, required=True)
    if "name" in data and data["name"] is not None and not isinstance(data["name"], str):
        problems.append(f"{where}: 'name' must be text or null")
    for key in ("value_template", "availability_topic", "json_attributes_topic"):
        _require_str(data, key, where, problems)
    _check_availability(data, where, problems)
    if "qos" in data and data["qos"] not in (0, 1, 2):
        problems.append(f"{where}: qos {data['qos']!r} is not 0, 1 or 2")
    if "entity_category" in data and data["entity_category"] != "diagnostic":
        problems.append(f"{where}: entity_category {data['entity_category']!r}: a {platform} "
                        f"can only be 'diagnostic'")
    for key in ("enabled_by_default", "force_update"):
        if key in data and not isinstance(data[key], bool):
            problems.append(f"{where}: {key!r} must be true or false")
    if "expire_after" in data and not (isinstance(data["expire_after"], int)
                                       and not isinstance(data["expire_after"], bool)
                                       and data["expire_after"] > 0):
        problems.append(f"{where}: expire_after must be a positive whole number of seconds")
    _check_device(data.get("device"), where, problems)
    _check_origin(data.get("origin"), where, problems)
    if platform == "sensor":
        _check_classes(data, where, problems)
    else:
        if data.get("device_class") is not None and data["device_class"] not in BINARY_DEVICE_CLASSES:
            problems.append(f"{where}: {data['device_class']!r} is not a binary_sensor device class")
        for key in ("payload_on", "payload_off"):
            _require_str(data, key, where, problems)
    return problems


def _check_classes(data: dict, where: str, problems: List[str]) -> None:
    device_class, state_class = data.get("device_class"), data.get("state_class")
    unit = data.get("unit_of_measurement")
    if unit is not None and not isinstance(unit, str):
        problems.append(f"{where}: unit_of_measurement must be text")
    if state_class is not None and state_class not in STATE_CLASSES:
        problems.append(f"{where}: {state_class!r} is not a state class")
    precision = data.get("suggested_display_precision")
    if precision is not None and not (isinstance(precision, int) and not isinstance(precision, bool)
                                      and precision >= 0):
        problems.append(f"{where}: suggested_display_precision must be a whole number >= 0")
    if device_class is None:
        return
    if device_class not in SENSOR_DEVICE_CLASSES:
        problems.append(f"{where}: {device_class!r} is not a sensor device class")
        return
    units, states = SENSOR_DEVICE_CLASSES[device_class]
    if unit not in units:
        problems.append(f"{where}: unit {unit!r} is not allowed for device_class {device_class} "
                        f"(allowed: {', '.join(sorted(str(u) for u in units))})")
    if state_class is not None and state_class not in states:
        problems.append(f"{where}: state_class {state_class} is not allowed for device_class "
                        f"{device_class} (allowed: {', '.join(sorted(states))})")


def _check_availability(data: dict, where: str, problems: List[str]) -> None:
    if "availability" in data and "availability_topic" in data:
        problems.append(f"{where}: 'availability' and 'availability_topic' are exclusive")
    if "availability" in data:
        items = data["availability"]
        if not isinstance(items, list) or not items:
            problems.append(f"{where}: 'availability' must be a non-empty list")
        else:
            for item in items:
                item = _expand(item, ABBREVIATIONS, where, problems) if isinstance(item, dict) else item
                if not isinstance(item, dict) or not isinstance(item.get("topic"), str):
                    problems.append(f"{where}: each availability entry needs a 'topic'")
                elif set(item) - {"topic", "payload_available", "payload_not_available",
                                  "value_template"}:
                    problems.append(f"{where}: unknown availability keys "
                                    f"{sorted(set(item) - {'topic', 'payload_available', 'payload_not_available', 'value_template'})}")
    if data.get("availability_mode", "latest") not in ("all", "any", "latest"):
        problems.append(f"{where}: availability_mode must be all, any or latest")


def _sub_object(value, name: str, table: Mapping[str, str], keys: set, where: str,
                problems: List[str]) -> Optional[dict]:
    """``device`` or ``origin``: an object, abbreviations expanded, no unknown keys."""
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.append(f"{where}: {name!r} must be an object")
        return None
    value = _expand(value, table, where, problems)
    for key in sorted(set(value) - keys):
        problems.append(f"{where}: {key!r} is not {'an' if name[0] in 'aeiou' else 'a'} {name} option")
    return value


def _check_device(device, where: str, problems: List[str]) -> None:
    device = _sub_object(device, "device", DEVICE_ABBREVIATIONS, DEVICE_KEYS, where, problems)
    if device is None:
        return
    ids = device.get("identifiers")
    if ids is None and not device.get("connections"):
        problems.append(f"{where}: the device needs 'identifiers' or 'connections'")
    elif ids is not None and not (isinstance(ids, str) or (isinstance(ids, list) and ids and
                                                            all(isinstance(i, str) for i in ids))):
        problems.append(f"{where}: device identifiers must be text or a list of text")
    for key in ("name", "manufacturer", "model", "sw_version", "via_device"):
        _require_str(device, key, where, problems, what="device ")


def _check_origin(origin, where: str, problems: List[str]) -> None:
    origin = _sub_object(origin, "origin", ORIGIN_ABBREVIATIONS, ORIGIN_KEYS, where, problems)
    if origin is not None:
        _require_str(origin, "name", where, problems, required=True, what="origin ")


def _require_str(data: Mapping, key: str, where: str, problems: List[str], required: bool = False,
                 what: str = "") -> None:
    if key not in data:
        if required:
            problems.append(f"{where}: {what}{key!r} is required")
        return
    if not isinstance(data[key], str) or not data[key]:
        problems.append(f"{where}: {what}{key!r} must be non-empty text")


def validate_all(messages: Iterable[Message]) -> List[str]:
    """``validate`` for each message, plus what only the whole set shows: a unique_id used by
    two entities, and a ``via_device`` naming a device nobody published (the latest message
    per topic counts, as retained messages do)."""
    latest: Dict[str, str] = {}
    for topic, payload in messages:
        latest[topic] = payload
    problems: List[str] = []
    owners: Dict[str, str] = {}
    devices, via = set(), []
    for topic, payload in latest.items():
        problems += validate(topic, payload)
        if not payload:
            continue
        try:
            data = _expand(json.loads(payload), ABBREVIATIONS, topic, [])
        except (ValueError, AttributeError):
            continue
        entities = list(data.get("components", {}).values()) if "components" in data else [data]
        for entity in entities:
            if not isinstance(entity, dict):
                continue
            uid = _expand(entity, ABBREVIATIONS, topic, []).get("unique_id")
            if uid in owners and owners[uid] != topic:
                problems.append(f"{topic}: unique_id {uid!r} is also used by {owners[uid]}")
            owners.setdefault(uid, topic)
        device = data.get("device")
        if isinstance(device, dict):
            device = _expand(device, DEVICE_ABBREVIATIONS, topic, [])
            ids = device.get("identifiers")
            devices.update([ids] if isinstance(ids, str) else ids or [])
            if device.get("via_device"):
                via.append((topic, device["via_device"]))
    for topic, parent in via:
        if parent not in devices:
            problems.append(f"{topic}: via_device {parent!r} is not a published device")
    return problems
