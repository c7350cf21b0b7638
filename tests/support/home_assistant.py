"""A simulated Home Assistant on a real broker: reads discovery configs and states as HA does.

It subscribes to everything, and

* checks every discovery config against Home Assistant's documented schema
  (``protocols.ha_discovery.validate``), collecting the problems;
* builds its entity registry from them: device discovery (``<prefix>/device/<id>/config``,
  shared keys merged into each component) and entity discovery; an empty payload deletes;
* reads each entity's state the way Home Assistant's MQTT sensor does: the payload, through
  ``value_template`` when there is one (the ``{{ value_json.<key> }}`` form), and, for a sensor
  with a device class, state class or unit, a number or a problem (HA refuses a non-numeric
  state for those); every state is recorded with its arrival, which is all HA keeps of time;
* knows availability from the availability topics, and can announce its own start (``online``
  on ``homeassistant/status``), as Home Assistant does.
"""

import json
import re
import threading
from typing import Callable, Dict, List, Optional

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from protocols.ha_discovery import ABBREVIATIONS, DEVICE_ABBREVIATIONS, HA_STATUS_TOPIC, validate
from tests.support.daemon import free_port
from tests.support.proclog import WAIT

_TEMPLATE = re.compile(r"\{\{\s*value_json\.([A-Za-z0-9_]+)\s*\}\}")
_DISCOVERY = re.compile(r"^homeassistant/(sensor|binary_sensor|device)/([^/]+)/config$")


def _expand(mapping: dict, table: dict) -> dict:
    return {table.get(k, k): v for k, v in mapping.items()}


class Entity:
    def __init__(self, platform: str, config: dict, topic: str):
        self.platform = platform
        self.config = config
        self.topic = topic               # the discovery topic that made it
        self.states: List[object] = []   # every state, in arrival order
        self.device = _expand(config.get("device", {}), DEVICE_ABBREVIATIONS)

    @property
    def state(self):
        return self.states[-1] if self.states else None

    @property
    def numeric(self) -> bool:
        return self.platform == "sensor" and any(
            k in self.config for k in ("device_class", "state_class", "unit_of_measurement"))


class SimulatedHomeAssistant:
    def __init__(self, port: int):
        self.port = port
        self.entities: Dict[str, Entity] = {}        # unique_id -> Entity
        self.availability: Dict[str, str] = {}       # topic -> last payload
        self.configs: List[tuple] = []               # every discovery message (topic, payload, retain)
        # (a broker passes a live message on with retain unset: whether it was retained shows
        # only to a later subscriber; see ``latest_configs``)
        self.problems: List[str] = []
        self._history: Dict[str, list] = {}
        self._cond = threading.Condition()
        self._subscribed = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fake-ha-{free_port()}")
        self.client.reconnect_delay_set(1, 1)
        self._topics: set = set()                    # state and availability topics subscribed
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        self.wait(lambda: self._subscribed, "the subscription")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    # -- what a test uses -----------------------------------------------------------------
    def wait(self, predicate: Callable[[], object], what: str, timeout: float = WAIT):
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise AssertionError(f"simulated Home Assistant: {what} not seen within {timeout} s; "
                                     f"entities {sorted(self.entities)}; problems {self.problems}")

    def birth(self) -> None:
        """Home Assistant (re)started: it announces itself and waits for discovery."""
        self.client.publish(HA_STATUS_TOPIC, "online", qos=1).wait_for_publish(WAIT)

    def entity(self, unique_id: str) -> Entity:
        with self._cond:
            return self.entities[unique_id]

    def available(self, entity: Entity) -> bool:
        """Home Assistant's rule for a list of availability topics (mode ``latest``: the
        last one heard decides; ours have one topic)."""
        items = entity.config.get("availability") or []
        if "availability_topic" in entity.config:
            items = [{"topic": entity.config["availability_topic"]}]
        with self._cond:
            for item in items:
                item = _expand(item, ABBREVIATIONS)
                if self.availability.get(item["topic"]) != item.get("payload_available", "online"):
                    return False
        return True

    # -- paho's thread --------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe("homeassistant/#", qos=1)
        for topic in self._topics:
            client.subscribe(topic, qos=1)

    def _follow(self, entity: "Entity") -> None:
        """Subscribe to an entity's topics, as Home Assistant does once it has its config (a
        retained state is given at once; a state published before that and not retained is
        never seen)."""
        items = entity.config.get("availability") or []
        topics = [entity.config.get("state_topic"), entity.config.get("availability_topic")]
        topics += [_expand(item, ABBREVIATIONS).get("topic") for item in items]
        for topic in topics:
            if topic and topic not in self._topics:
                self._topics.add(topic)
                self.client.subscribe(topic, qos=1)

    def _on_subscribe(self, *args) -> None:
        with self._cond:
            self._subscribed += 1
            self._cond.notify_all()

    def _on_message(self, client, userdata, message) -> None:
        topic, payload = message.topic, message.payload.decode("utf-8", "replace")
        with self._cond:
            found = _DISCOVERY.match(topic)
            if found:
                self.configs.append((topic, payload, bool(message.retain)))
                self.problems += validate(topic, payload)
                self._discovered(found.group(1), topic, payload)
            elif topic.startswith("homeassistant/"):
                pass   # its own status, other discovery components
            else:
                self.availability[topic] = payload
                for entity in self.entities.values():
                    if entity.config.get("state_topic") == topic:
                        self._read_state(entity, payload)
            self._cond.notify_all()

    def _discovered(self, component: str, topic: str, payload: str) -> None:
        replaced = {uid: self.entities.pop(uid) for uid, e in list(self.entities.items())
                    if e.topic == topic}    # deleted by an empty payload, or updated
        self._history = {uid: e.states for uid, e in replaced.items()}   # an update keeps the state
        if not payload:
            return
        data = _expand(json.loads(payload), ABBREVIATIONS)
        if component == "device":
            shared = {k: v for k, v in data.items() if k != "components"}
            for raw in data.get("components", {}).values():
                entity = dict(shared, **_expand(raw, ABBREVIATIONS))
                platform = entity.pop("platform", None)
                if entity.get("unique_id"):
                    self._add(Entity(platform, entity, topic))
        elif data.get("unique_id"):
            self._add(Entity(component, data, topic))

    def _add(self, entity: "Entity") -> None:
        entity.states = self._history.get(entity.config["unique_id"], entity.states)
        self.entities[entity.config["unique_id"]] = entity
        self._follow(entity)

    def _read_state(self, entity: Entity, payload: str) -> None:
        template = entity.config.get("value_template")
        value: object = payload
        if template:
            match = _TEMPLATE.fullmatch(template.strip())
            if not match:
                self.problems.append(f"{entity.config['unique_id']}: template {template!r} not understood")
                return
            try:
                value = json.loads(payload)[match.group(1)]
            except (ValueError, KeyError, TypeError):
                self.problems.append(f"{entity.config['unique_id']}: {payload!r} has no {match.group(1)}")
                return
        if entity.numeric:
            try:
                value = float(value)
            except (TypeError, ValueError):
                self.problems.append(f"{entity.config['unique_id']}: state {value!r} is not a number")
                return
        entity.states.append(value)

    def latest_configs(self) -> Dict[str, str]:
        """The last config payload seen per discovery topic (what a retained copy must be)."""
        with self._cond:
            return {topic: payload for topic, payload, _ in self.configs}

    def find(self, node_part: str, name: str) -> Optional[Entity]:
        """The entity whose unique_id ends in ``_<node>_<name>``."""
        with self._cond:
            for uid, entity in self.entities.items():
                if uid.endswith(f"_{node_part}_{name}"):
                    return entity
        return None
