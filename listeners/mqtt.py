"""MQTT listener: readings from an MQTT broker (another gateway or emonhub, Shelly, Tasmota,
zigbee2mqtt, anything that publishes numbers).

What a message on a subscribed topic becomes (the first rule that fits):

1. ``node_map``: a topic (``+`` matches one level) mapped to a node, e.g.
   ``"shellies/plug-1/relay/0/power = plug1"``, ``"zigbee2mqtt/+ = {2}"`` (``{n}``: the
   topic's n-th level). The payload is a JSON object (every number in it is an input, nested
   objects joined with ``_``: Tasmota's ``{"ENERGY": {"Power": 5}}`` is ``ENERGY_Power``;
   ``time`` is the reading's time) or a plain number (the input is named by the topic's last
   level).
2. emonhub's and this gateway's own topic forms, so one gateway can feed another:
   ``<csv_base_topic>/rx/<nodeid>/values`` with ``1,2,3``; ``<base_topic>/<node>`` with a JSON
   object (``{"power1": 230, "time": 1712345678}``: the time is kept, so a backlog replayed
   by the other gateway lands at the right time); ``<base_topic>/<node>/<input>`` with a plain
   number (one reading per value: prefer the JSON form between gateways).

Nothing is lost while the gateway restarts: the subscription is QoS 1 in a persistent session
(``clean_session`` off, a stable client id), so the broker keeps what comes meanwhile, and a
message is acknowledged only once its reading is in the gateway's spool. Retained messages are
old readings (sent again at every connection) and are ignored unless ``retained = True``. A
message that fits no rule, or is not numbers, is counted and logged (rate-limited), never fatal.

paho runs its own network thread; every message is handed to the event loop's thread, which
makes the reading, hands it on and then acknowledges the message.
"""

import json
import math
import socket
import time
from typing import Dict, List, Optional, Tuple

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.frame import Frame, FrameError, Node, input_name_problem, parse_node, parse_number
from gateway.mqtt_broker import (BROKER_SAMPLE, BROKER_SECRETS, BROKER_SPEC, REFUSALS, TlsFilesError, broker_port,
                                 broker_problems, broker_url, broker_warnings, tls_context)
from listeners.base import Listener

MAX_PAYLOAD = 65536        # bytes; a larger message is not a reading
EARLIEST = 946684800.0     # 2000-01-01: a "time" before this is not a Unix time
FUTURE = 86400.0           # s: a "time" further ahead than this is not believed


class Malformed(ValueError):
    """A message that is not a reading; the text says why."""


class NodeMap:
    """``node_map`` entries: topic filters (with ``+``) and the node each names."""

    def __init__(self, entries: List[str]):
        self.rules: List[Tuple[List[str], str]] = []
        for entry in entries:
            topic, sep, node = entry.rpartition("=")
            if not sep or not topic.strip() or not node.strip():
                raise ValueError(f"{entry!r}: expected 'topic = node'")
            levels = topic.strip().split("/")
            if "#" in topic:
                raise ValueError(f"{entry!r}: use + for one level; # is not allowed here")
            node = node.strip()
            for part in _placeholders(node):
                if not 1 <= part <= len(levels):
                    raise ValueError(f"{entry!r}: {{{part}}} is not a level of the topic")
            self.rules.append((levels, node))

    def node_for(self, topic: str) -> Optional[str]:
        """The node text for ``topic`` (placeholders filled in), or None when no entry fits."""
        levels = topic.split("/")
        for pattern, node in self.rules:
            if len(pattern) == len(levels) and all(p in ("+", l) for p, l in zip(pattern, levels)):
                for part in _placeholders(node):
                    node = node.replace(f"{{{part}}}", levels[part - 1])
                return node
        return None


def _placeholders(node: str) -> List[int]:
    out, rest = [], node
    while "{" in rest and "}" in rest.split("{", 1)[1]:
        inner, rest = rest.split("{", 1)[1].split("}", 1)
        if not inner.isdigit():
            break
        out.append(int(inner))
    return out


def json_values(payload: str) -> Tuple[Dict[str, float], Optional[float]]:
    """The numbers of a JSON object (nested objects joined with ``_``) and its ``time``."""
    try:
        data = json.loads(payload)
    except ValueError:
        raise Malformed("not JSON nor a number") from None
    if not isinstance(data, dict):
        raise Malformed("JSON that is not an object")
    values: Dict[str, float] = {}
    stamp = None

    def walk(obj: dict, prefix: str) -> None:
        nonlocal stamp
        for key, value in obj.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(value, name + "_")
            elif name == "time":
                stamp = value
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                if not math.isfinite(value):
                    raise Malformed(f"{name} is {value}")
                problem = input_name_problem(name)
                if problem:
                    raise Malformed(f"input name {name!r}: {problem}")
                values[name] = value
            # text, lists, booleans, null: not readings (a device's other fields)

    walk(data, "")
    return values, _reading_time(stamp)


def _reading_time(stamp) -> Optional[float]:
    if stamp is None:
        return None
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float)):
        raise Malformed(f"time {stamp!r} is not a Unix time in seconds")
    if not EARLIEST <= stamp <= time.time() + FUTURE:
        raise Malformed(f"time {stamp!r} is not a plausible Unix time in seconds")
    return float(stamp)


class MqttListener(Listener):
    SPEC = BROKER_SPEC + """
    topics = force_list(default=list('emon/#', 'emonhub/rx/+/values'))
    base_topic = string(default='emon')
    csv_base_topic = string(default='emonhub')
    node_map = force_list(default=list())
    qos = integer(min=0, max=1, default=1)
    persistent_session = boolean(default=True)
    retained = boolean(default=False)
    """
    SAMPLE = """
    # Reads an MQTT broker: another gateway or emonhub (their emon/<node> JSON, with its
    # time, emon/<node>/<input> numbers, emonhub/rx/<id>/values CSV), and devices that
    # publish JSON objects or numbers (Shelly, Tasmota, zigbee2mqtt) through node_map.
    # Subscribed at QoS 1 in a persistent session: what is published while the gateway
    # restarts is read when it is back. Bad messages are counted and logged.
    [[...]]
""" + BROKER_SAMPLE + """    # Topic filters to read (+ one level, # the rest). Quote a topic with #: in this
    # file a bare # starts a comment. Never the topics this gateway publishes itself.
    topics
    base_topic
    csv_base_topic
    # "topic = node" pairs; + matches a level, {n} in the node is the topic's n-th
    # level. A JSON object's numbers become inputs (nested: ENERGY_Power); a number's
    # input is the topic's last level. For example:
    #   "shellies/plug-1/relay/0/power = plug1", "zigbee2mqtt/+ = {2}"
    node_map
    qos
    persistent_session
    # True: retained messages are readings too (by default they are old ones: ignored).
    retained
    """
    SECRETS = BROKER_SECRETS

    @classmethod
    def check_settings(cls, settings: dict) -> List[str]:
        problems = broker_problems(settings)
        topics = [t.strip() for t in settings["topics"] if t.strip()]
        if not topics:
            problems.append("topics: expected one or more topics to subscribe to (+ and # allowed)")
        for topic in topics:
            if topic.endswith("/"):
                problems.append(f"topics: {topic!r} ends with '/': a # starts a comment here, "
                                f"write \"{topic}#\"")
                continue
            levels = topic.split("/")
            if "#" in levels[:-1] or any(("+" in l or "#" in l) and len(l) > 1 for l in levels):
                problems.append(f"topics: {topic!r} is not a valid topic filter (+ and # stand alone; "
                                f"# only last)")
        try:
            NodeMap(settings["node_map"])
        except ValueError as exc:
            problems.append(f"node_map: {exc}")
        return problems

    @classmethod
    def warn_settings(cls, settings: dict) -> List[str]:
        return broker_warnings(settings)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        settings = self.settings
        self._map = NodeMap(settings["node_map"])
        self._base = settings["base_topic"].strip("/").split("/")
        self._csv = settings["csv_base_topic"].strip("/").split("/")
        self._where = broker_url(settings)
        self._client_id = settings["client_id"] or f"oemgateway-{socket.gethostname()}-{self.name}"
        self._client: Optional[mqtt.Client] = None
        self._refused = False
        self.ignored_retained = 0

    # -- the contract -------------------------------------------------------------------
    def open(self) -> None:
        settings = self.settings
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self._client_id,
                             clean_session=not settings["persistent_session"],
                             protocol=mqtt.MQTTv311, manual_ack=True)
        client.reconnect_delay_set(1, 60)
        if settings["username"]:
            client.username_pw_set(settings["username"], settings["password"] or None)
        if settings["tls"]:
            try:
                client.tls_set_context(tls_context(settings))
            except TlsFilesError as exc:
                self.log.error("%s: %s; not connecting", self, exc)
                return
            if not settings["verify_tls"]:
                client.tls_insecure_set(True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client
        # The connection (name lookup included) is made on paho's thread, never on the loop's.
        client.connect_async(settings["host"], broker_port(settings), settings["keepalive"])
        client.loop_start()

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()
        super().close()

    # -- paho's thread: hand everything to the loop -------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            reason = str(reason_code)
            self.loop.call_soon_threadsafe(lambda: self._refusal(reason))
            return
        topics = [t.strip() for t in self.settings["topics"] if t.strip()]
        client.subscribe([(topic, self.settings["qos"]) for topic in topics])
        resumed = bool(flags.session_present)
        self.loop.call_soon_threadsafe(lambda: self._connected(resumed))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        refused = [str(code) for code in reason_codes if code.is_failure]
        self.loop.call_soon_threadsafe(lambda: self._subscribed(len(reason_codes), refused))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._client is client:
            reason = str(reason_code)
            self.loop.call_soon_threadsafe(
                lambda: self.log.warning("%s: connection to %s lost (%s); reconnecting",
                                         self, self._where, reason))

    def _on_message(self, client, userdata, message) -> None:
        topic, payload, retain = message.topic, message.payload, bool(message.retain)
        mid, qos, arrived = message.mid, message.qos, time.time()
        self.loop.call_soon_threadsafe(lambda: self._take(client, topic, payload, retain, mid, qos, arrived))

    # -- the loop's thread --------------------------------------------------------------
    def _connected(self, resumed: bool) -> None:
        self._refused = False
        self.log.info("%s: connected to %s as %s%s", self, self._where, self._client_id,
                      " (session resumed: messages sent meanwhile follow)" if resumed else "")

    def _subscribed(self, count: int, refused: List[str]) -> None:
        if refused:
            self.log.error("%s: the broker refused %d of the %d topics (%s): check its ACL", self,
                           len(refused), count, ", ".join(refused))
        else:
            self.log.debug("%s: subscribed to %d topics", self, count)

    def _refusal(self, reason: str) -> None:
        if not self._refused:
            self._refused = True
            self.log.error("%s: %s refused the connection: %s; retrying", self, self._where,
                           REFUSALS.get(reason, reason))

    def _take(self, client, topic: str, payload: bytes, retain: bool, mid: int, qos: int,
              arrived: float) -> None:
        if self._client is not client:
            return   # closed meanwhile: not acknowledged, so the broker gives it to the next session
        try:
            if retain and not self.settings["retained"]:
                self.ignored_retained += 1
                self.log.debug("%s: ignored a retained message on %s (an old reading)", self, topic)
            else:
                try:
                    frame = self.reading(topic, payload, arrived)
                except Malformed as exc:
                    self.reject(f"{topic}: {exc}", payload[:80])
                else:
                    self.emit(frame)
        finally:
            if qos:
                client.ack(mid, qos)   # the reading is in the spool (or refused for good)

    def reading(self, topic: str, payload: bytes, arrived: float) -> Frame:
        """The frame a message makes; raises Malformed."""
        if len(payload) > MAX_PAYLOAD:
            raise Malformed(f"{len(payload)} bytes")
        try:
            text = payload.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise Malformed("not UTF-8 text") from None
        if not text:
            raise Malformed("empty")
        levels = topic.split("/")
        mapped = self._map.node_for(topic)
        if mapped is not None:
            return self._named(self._node(mapped), text, levels[-1], arrived)
        n = len(self._csv)
        if len(levels) == n + 3 and levels[:n] == self._csv and levels[n] == "rx" and levels[n + 2] == "values":
            try:
                values = tuple(parse_number(v.strip()) for v in text.split(","))
            except FrameError as exc:
                raise Malformed(f"expected comma-separated numbers ({exc})") from None
            return Frame(self._node(levels[n + 1]), values, arrived, None, None, self.name)
        n = len(self._base)
        if levels[:n] == self._base and len(levels) in (n + 1, n + 2):
            return self._named(self._node(levels[n]), text, levels[n + 1] if len(levels) == n + 2 else None,
                               arrived)
        raise Malformed("a topic this listener has no rule for (see node_map)")

    def _named(self, node: Node, text: str, input_name: Optional[str], arrived: float) -> Frame:
        if text[0] not in "{[":
            if input_name is None:
                raise Malformed("expected a JSON object (a plain number needs a topic that "
                                "names the input: <node>/<input>)")
            problem = input_name_problem(input_name)
            if problem:
                raise Malformed(f"input name {input_name!r}: {problem}")
            try:
                value = parse_number(text)
            except FrameError as exc:
                raise Malformed(str(exc)) from None
            return Frame(node, (value,), arrived, (input_name,), None, self.name)
        values, stamp = json_values(text)
        if not values:
            raise Malformed("a JSON object without numbers")
        return Frame(node, tuple(values.values()), stamp or arrived, tuple(values), None, self.name)

    @staticmethod
    def _node(text: str) -> Node:
        try:
            return parse_node(text)
        except FrameError as exc:
            raise Malformed(f"node {text!r}: {exc}") from None
