"""MQTT buffer: publishes readings to a broker in emonhub's topic formats, and passes radio
commands published to a TX topic on to an RFM2Pi board.

A batch is delivered when the broker has acknowledged every message of it (QoS 1 PUBACK; with
``qos = 0``, when paho has written it to the socket). Until then the readings stay in the
gateway's queue and spool. paho never holds more than the messages in flight: they are fed
to it ``max_inflight`` at a time as PUBACKs come back, and after any failure the client is
thrown away with whatever it still held, so nothing is re-sent behind the base's back; the
base re-sends the batch (duplicates are at most that batch, in order).

The connection is opened by the first batch (and again by the first batch after a failure);
while it is up and idle, paho keeps it alive and reconnects it itself, so the status topic and
the TX subscription stay up between readings.

Topic formats (``formats``, any combination, in emonhub's shapes)::

    json     <base>/<nodename>             {"power1":230,"vrms":241.2,"rssi":-60,"time":1712345678}
    nodevar  <base>/<nodename>/<name>      230           (one message per value: Home Assistant)
    csv      <csv_base>/rx/<nodeid>/values 230,241.2,-60 (emonhub's "node" format)

Only ``json`` carries the time a reading was received, so it is the format for destinations
that store history (emoncms' MQTT input honours ``time``); the others are stamped by the
receiver on arrival, which is wrong for a backlog sent after an outage.

Home Assistant (``ha_discovery``, ``buffers/ha_link.py``): retained discovery configs make each
node a device and each input a sensor, and the nodevar topics become its state topics, carrying
the latest value of each input only (not every reading of a backlog: Home Assistant would store
them all at the time they arrive).

Fleets (``site``, ``persistent_session``): the site name prefixes every topic (``<site>/emon/
<node>``), so one central broker and its consumers (Telegraf's ``mqtt_consumer`` with
``topic_parsing``) tell sites apart and a broker ACL can give each site its own subtree; see
``docs/fleet.md``.
"""

import json
import logging
import re
import socket
import ssl
import threading
import time
from typing import List, Optional, Tuple

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from buffers.base import AuthError, Buffer, TransientError
from buffers.ha_link import HomeAssistantLink, configured_nodes, input_units
from gateway.formats import json_time, number_text, site_problem
from gateway.frame import Frame, FrameError, parse_node, parse_number
from gateway.logs import LogThrottle
from gateway.mqtt_broker import (BROKER_SAMPLE, BROKER_SECRETS, BROKER_SPEC, REFUSALS, TlsFilesError, broker_port,
                                 broker_problems, broker_url, broker_warnings, tls_context)
from protocols.ha_discovery import ONLINE, DiscoveryConfig

FORMATS = ("json", "nodevar", "csv")
NODE_PLACEHOLDER = "{node}"
BASE_PLACEHOLDER = "{base}"
CLOSE_WAIT = 2.0   # s a clean close waits for the broker to take the "offline" status

Message = Tuple[str, str, bool]   # topic, payload, retained
_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]")


class MqttBuffer(Buffer):
    SPEC = BROKER_SPEC + """
    qos = integer(min=0, max=1, default=1)
    retain = boolean(default=False)
    formats = force_list(default=list('json'))
    base_topic = string(default='emon')
    csv_base_topic = string(default='emonhub')
    status_topic = string(default='{base}/gateway/status')
    tx_topic = string(default='emonhub/tx/{node}/values')
    tx_listener = string(default='')
    max_inflight = integer(min=1, max=10000, default=100)
    timeout = float(min=0.1, max=3600, default=10)
    site = string(default='')
    persistent_session = boolean(default=False)
    ha_discovery = boolean(default=False)
    ha_prefix = string(default='homeassistant')
    ha_status_topic = string(default='homeassistant/status')
    ha_style = option('device', 'entity', default='device')
    ha_gateway_id = string(default='')
    emonhub_payloads = boolean(default=False)
    """
    SAMPLE = """
    # Publishes readings to an MQTT broker (Mosquitto; Home Assistant, Node-RED and emoncms'
    # MQTT input read them) in emonhub's topic formats, and passes radio commands back. A
    # reading counts as delivered once the broker has acknowledged it (QoS 1).
    [[...]]
""" + BROKER_SAMPLE + """    # 1: a reading is delivered when the broker acknowledges it (nothing is lost);
    # 0: when it is written to the network (a broker restart can lose some).
    qos
    # Retain the readings' messages (the status topic is always retained).
    retain
    # Topic formats, one or more of:
    #   json     <base_topic>/<nodename>             {"power1":230,"vrms":241.2,"time":1712345678}
    #   nodevar  <base_topic>/<nodename>/<name>      230   (one message per value: Home Assistant)
    #   csv      <csv_base_topic>/rx/<nodeid>/values 230,241.2   (emonhub's node format)
    # Only json carries the time a reading was received: keep it for anything that stores
    # history (emoncms), or a backlog sent after an outage is stored at the wrong time.
    formats = json
    base_topic
    csv_base_topic
    # Retained "online" while connected, "offline" after a stop, and as the Last Will
    # when the gateway dies. Empty: none.
    status_topic
    # Values published here as CSV ("1,300") go out by radio to the node in the topic
    # (its id or its nodename), packed per [nodes] [[node]] [[[tx]]]. Empty: no TX.
    # Whoever may publish there may transmit: restrict it with the broker's ACL.
    tx_topic
    # The radio listener that transmits (empty: every rfm2pi, rfm12pi and rfm69 listener).
    tx_listener
    # Messages sent ahead of the broker's acknowledgements.
    max_inflight
    # Seconds without an answer from the broker before reconnecting.
    timeout
    # Fleets (docs/fleet.md): this site's name (letters, digits, _ . -), prefixed to
    # every topic: <site>/emon/<node>, its status and TX topics. Empty: none.
    site
    # Keep the MQTT session (clean session off) under the stable client_id, so the
    # broker keeps what it owes this gateway (TX commands) while it is away.
    persistent_session
    # Home Assistant MQTT discovery: every node a device, every input a sensor, with
    # the device/state classes its unit gives (W: power, Wh/kWh: energy ...). The
    # nodevar topics then carry Home Assistant's states: the latest value of each input
    # only (after an outage, not the whole backlog), retained.
    ha_discovery
    # Home Assistant's discovery prefix, and the topic where it announces "online".
    ha_prefix
    ha_status_topic
    # device: one message per node (Home Assistant 2024.11+); entity: one per input.
    ha_style
    # This gateway's ID in Home Assistant's unique IDs (letters, digits, _ -). Empty:
    # the site, else the host name. Never change it once Home Assistant knows the
    # gateway: its sensors would be new ones.
    ha_gateway_id
    # Payloads byte for byte as emonhub writes them: JSON spaced as Python writes it
    # ({"P1": 230, "time": 1712345678.123}), only named values in it, time before rssi;
    # no rssi of 0. On when an emonhub.conf is run.
    emonhub_payloads
    """
    # emonhub_payloads: payloads byte for byte as emonhub's MQTT interfacer writes them, for
    # receivers that compare text: JSON spaced as Python's json.dumps (", ", ": "), its names
    # in order, then "time" (seconds as a float, as stamped), then "rssi"; only named values
    # in JSON; no rssi when it is 0. (Set when an emonhub.conf is run; see docs/emonhub.md.)
    SECRETS = BROKER_SECRETS
    _emonhub_payloads = False   # (set from the settings in configure)

    # -- settings -----------------------------------------------------------------------
    @classmethod
    def check_settings(cls, settings: dict) -> List[str]:
        problems = []
        formats = [f.strip().lower() for f in settings["formats"] if f.strip()]
        unknown = [f for f in formats if f not in FORMATS]
        if not formats or unknown:
            problems.append(f"formats = {', '.join(settings['formats'])}: expected one or more of "
                            f"{', '.join(FORMATS)}")
        for key in ("base_topic", "csv_base_topic", "status_topic"):
            topic = settings[key]
            if any(c in topic for c in "+#\0") or (key != "status_topic" and not topic.strip("/")):
                problems.append(f"{key} = {topic!r}: expected a topic without wildcards (+ #)")
        tx = settings["tx_topic"]
        if tx and (tx.split("/").count(NODE_PLACEHOLDER) != 1 or any(c in tx for c in "+#\0")):
            problems.append(f"tx_topic = {tx!r}: expected a topic with one level {NODE_PLACEHOLDER} "
                            f"(e.g. emonhub/tx/{NODE_PLACEHOLDER}/values), or empty for no TX")
        problems += broker_problems(settings)
        problem = site_problem(settings["site"])
        if problem:
            problems.append(problem)
        for key in ("ha_prefix", "ha_status_topic"):
            topic = settings[key]
            if any(c in topic for c in "+#\0") or not topic.strip("/"):
                problems.append(f"{key} = {topic!r}: expected a topic without wildcards (+ #)")
        if settings["ha_gateway_id"] and _ID_CHARS.search(settings["ha_gateway_id"]):
            problems.append(f"ha_gateway_id = {settings['ha_gateway_id']!r}: expected letters, "
                            f"digits, _ and - (Home Assistant's ID characters)")
        return problems

    @classmethod
    def warn_settings(cls, settings: dict) -> List[str]:
        warnings = broker_warnings(settings)
        if settings["qos"] == 0:
            warnings.append("qos = 0: readings count as delivered once written to the network; "
                            "a broker restart or a network cut can lose some")
        return warnings

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._connection: Optional[_Connection] = None
        self._tx_log = LogThrottle(self.log, logging.WARNING, 60.0)
        self._retained_log = LogThrottle(self.log, logging.WARNING, 3600.0)
        self._ha: Optional[HomeAssistantLink] = None
        self._ha_table = None          # the [nodes] table Home Assistant was last told about

    # -- plugin hooks -------------------------------------------------------------------
    def configure(self) -> None:
        settings = self.settings
        site = settings["site"].strip()
        prefix = f"{site}/" if site else ""
        self._formats = [f.strip().lower() for f in settings["formats"] if f.strip()]
        self._emonhub_payloads = settings.get("emonhub_payloads", False)
        self._base = prefix + settings["base_topic"].strip("/")
        self._csv_base = prefix + settings["csv_base_topic"].strip("/")
        status = settings["status_topic"].strip("/")
        self._status_topic = (status.replace(BASE_PLACEHOLDER, self._base) if BASE_PLACEHOLDER in status
                              else prefix + status if status else "")
        self._tx_levels = (prefix + settings["tx_topic"].strip("/")).split("/") if settings["tx_topic"] else None
        self._port = broker_port(settings)
        self._where = broker_url(settings)
        self._client_id = settings["client_id"] or f"oemgateway-{site or socket.gethostname()}-{self.name}"
        self._ha = self._ha_link() if settings["ha_discovery"] else None
        self._ha_table = None
        if self._connection is not None:   # new settings (on the sender thread): reconnect
            self._disconnect(clean=True)

    def send(self, batch: List[Frame]) -> None:
        connection = self._connect()
        messages = self._ha_removals() if self._ha is not None else []
        for frame in batch:
            if self._ha is not None:
                messages += self._ha.before(frame)
            messages += self._messages(frame)
        if self._ha is not None:
            # Caught up when nothing is queued behind this batch: then the latest values go
            # to Home Assistant; during a backlog they wait (the latest per input).
            messages += self._ha.states(batch, caught_up=self.backlog is None or self.backlog() <= len(batch))
        try:
            connection.publish_all(messages, self.settings["qos"], self.settings["max_inflight"],
                                   self.settings["timeout"])
        except TransientError:
            self._disconnect(clean=False)   # paho must not re-send what it still holds
            raise

    def close_transport(self) -> None:
        self._disconnect(clean=True)
        self._tx_log.flush()
        self._retained_log.flush()

    # -- messages -----------------------------------------------------------------------
    def _messages(self, frame: Frame) -> List[Message]:
        """The messages of one reading, in the configured formats (with Home Assistant on,
        the nodevar topics carry its states instead: see ``HomeAssistantLink.states``)."""
        if self._emonhub_payloads:
            return self._emonhub_messages(frame)
        named = frame.named_values()
        retain = self.settings["retain"]
        out: List[Message] = []
        for fmt in self._formats:
            if fmt == "json":
                payload = dict(named, time=json_time(frame.time))
                out.append((f"{self._base}/{frame.node}", json.dumps(payload, separators=(",", ":")),
                            retain))
            elif fmt == "nodevar":
                if self._ha is None:
                    out += [(f"{self._base}/{frame.node}/{name}", number_text(value), retain)
                            for name, value in named.items()]
            else:
                values = list(frame.values) + ([frame.rssi] if frame.rssi is not None else [])
                node_id = self.nodes.table.node_id(frame.node) if self.nodes is not None else frame.node
                out.append((f"{self._csv_base}/rx/{node_id}/values", ",".join(map(number_text, values)),
                            retain))
        return out

    def _emonhub_messages(self, frame: Frame) -> List[Message]:
        """The messages emonhub's MQTT interfacer publishes for ``frame`` (EmonHubMqttInterfacer
        ``_process_post``, v2.7.19): see ``emonhub_payloads``."""
        names = frame.names or ()
        retain = self.settings["retain"]
        rssi = frame.rssi if frame.rssi else None
        out: List[Message] = []
        for fmt in self._formats:
            if fmt == "json":
                payload = dict(zip(names, frame.values), time=float(frame.time))
                if rssi is not None:
                    payload["rssi"] = rssi
                out.append((f"{self._base}/{frame.node}", json.dumps(payload), retain))
            elif fmt == "nodevar":
                out += [(f"{self._base}/{frame.node}/{names[i] if i < len(names) else i + 1}", str(value), retain)
                        for i, value in enumerate(frame.values)]
                if rssi is not None:
                    out.append((f"{self._base}/{frame.node}/rssi", str(rssi), retain))
            else:
                node_id = self.nodes.table.node_id(frame.node) if self.nodes is not None else frame.node
                values = list(frame.values) + ([rssi] if rssi is not None else [])
                out.append((f"{self._csv_base}/rx/{node_id}/values", ",".join(map(str, values)), retain))
        return out

    # -- Home Assistant -----------------------------------------------------------------
    def _ha_link(self) -> HomeAssistantLink:
        settings = self.settings
        gateway_id = settings["ha_gateway_id"] or _ID_CHARS.sub(
            "_", settings["site"].strip() or socket.gethostname())
        config = DiscoveryConfig(gateway_id=gateway_id, prefix=settings["ha_prefix"].strip("/"),
                                 base_topic=self._base, status_topic=self._status_topic,
                                 style=settings["ha_style"], qos=settings["qos"],
                                 gateway_name=f"OEM Gateway {settings['site'].strip() or gateway_id}")
        return HomeAssistantLink(config, self._units_of)

    def _units_of(self, node) -> dict:
        if self.nodes is None:
            return {}
        return input_units(self.nodes.table, node, getattr(self.nodes, "units", None))

    def _ha_removals(self) -> List[Message]:
        """Empty retained configs for the nodes ``[nodes]`` no longer lists (after a reload)."""
        table = self.nodes.table if self.nodes is not None else None
        if table is self._ha_table:
            return []
        old, self._ha_table = self._ha_table, table
        configured = configured_nodes(table)
        if old is None:   # (the manifest an earlier run left is compared on paho's thread)
            return [self._ha.manifest(configured)]
        gone = configured_nodes(old) - configured
        self._log_removed(gone)
        return self._ha.removed(gone) + [self._ha.manifest(configured)]

    def _log_removed(self, gone) -> None:
        if gone:
            self.log.info("%s: node(s) %s left [nodes]: removing them from Home Assistant", self,
                          ", ".join(map(str, sorted(gone, key=str))))

    def on_ha_manifest(self, message: "mqtt.MQTTMessage", publish) -> None:
        """The retained list of nodes Home Assistant was told about (paho's thread): nodes no
        longer in ``[nodes]`` (removed while the gateway was stopped) are deleted."""
        table = self.nodes.table if self.nodes is not None else None
        messages, gone = self._ha.reconcile(message.payload.decode("utf-8", "replace"),
                                            configured_nodes(table))
        self._log_removed(gone)
        for topic, payload, retain in messages:
            publish(topic, payload, retain)

    def on_ha_status(self, message: "mqtt.MQTTMessage", publish) -> None:
        """Home Assistant's status topic (paho's thread): on ``online`` (it has started), send
        every config and the latest states again."""
        if self._ha is None or message.payload.decode("utf-8", "replace").strip() != ONLINE:
            return
        messages = self._ha.everything()
        self.log.info("%s: Home Assistant is online: sending its %d discovery and state "
                      "messages again", self, len(messages))
        for topic, payload, retain in messages:
            publish(topic, payload, retain)

    # -- the connection -----------------------------------------------------------------
    def _connect(self) -> "_Connection":
        """The live connection, opening a new one if there is none (raises DeliveryErrors)."""
        connection = self._connection
        if connection is not None and connection.connected:
            return connection
        if connection is not None:   # dropped while idle, paho still trying: start afresh
            self._disconnect(clean=False)
        connection = _Connection(self)
        try:
            connection.open()
        except BaseException:
            connection.close(clean=False)
            raise
        self._connection = connection
        self.log.info("%s: connected to %s as %s", self, self._where, self._client_id)
        return connection

    def _disconnect(self, clean: bool) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close(clean)

    def _tls_context(self) -> ssl.SSLContext:
        try:
            return tls_context(self.settings)
        except TlsFilesError as exc:
            raise AuthError(str(exc)) from None

    # -- receiving (paho's thread) ------------------------------------------------------
    def subscriptions(self) -> List[str]:
        topics = []
        if self._tx_levels is not None:
            topics.append("/".join("+" if level == NODE_PLACEHOLDER else level
                                   for level in self._tx_levels))
        if self._ha is not None:
            topics += [self.settings["ha_status_topic"].strip("/"), self._ha.manifest_topic]
        return topics

    def on_message(self, message: "mqtt.MQTTMessage", publish) -> None:
        """A message on a subscribed topic (paho's thread); ``publish(topic, payload, retain)``."""
        if self._ha is not None and message.topic == self.settings["ha_status_topic"].strip("/"):
            self.on_ha_status(message, publish)
        elif self._ha is not None and message.topic == self._ha.manifest_topic:
            self.on_ha_manifest(message, publish)
        else:
            self.on_tx(message)

    def on_tx(self, message: "mqtt.MQTTMessage") -> None:
        """A message on the TX topic: CSV values for the node named in the topic."""
        topic = message.topic
        if message.retain:
            self._retained_log("%s: ignored a retained message on %s (a retained command would be "
                               "sent again at every connection; publish TX messages without retain)",
                               self, topic)
            return
        levels = topic.split("/")
        if self._tx_levels is None or len(levels) != len(self._tx_levels):
            return
        try:
            node = parse_node(levels[self._tx_levels.index(NODE_PLACEHOLDER)])
            text = message.payload.decode("utf-8").strip()
            values = tuple(parse_number(v) for v in re.split(r"[,\s]+", text)) if text else ()
            if not values:
                raise FrameError("no values")
        except (FrameError, UnicodeDecodeError) as exc:
            self._tx_log("%s: ignored a message on %s: %s (expected comma-separated numbers)",
                         self, topic, exc)
            return
        if self.transmit is None:
            self._tx_log("%s: ignored a message on %s: nothing here can transmit", self, topic)
            return
        self.log.debug("%s: %s: sending %s to node %s", self, topic, values, node)
        self.transmit(node, values, self.settings["tx_listener"] or None)


class _Connection:
    """One paho client and its connection to the broker. Used until it fails, never reused."""

    def __init__(self, buffer: MqttBuffer):
        self.buffer = buffer
        self.log = buffer.log
        self.cond = threading.Condition()
        self.connack = None        # the broker's answer to CONNECT (a ReasonCode)
        self.connected = False
        self.drops = 0             # connections lost since open()
        self.acked: set = set()    # message ids paho reported done, not yet consumed
        settings = buffer.settings
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=buffer._client_id,
                             clean_session=not settings["persistent_session"],
                             protocol=mqtt.MQTTv311)
        client.connect_timeout = settings["timeout"]
        # Room for the window of readings plus the two status messages. Without Home Assistant,
        # never more: a message beyond it is refused (MQTT_ERR_QUEUE_SIZE), not queued by paho.
        # With it, Home Assistant's restart makes paho's thread publish every config at once:
        # those wait in paho's queue (the client is thrown away with them after a failure, and
        # a new connection sends them all again).
        client.max_inflight_messages_set(settings["max_inflight"] + 2)
        client.max_queued_messages_set(0 if buffer._ha is not None else settings["max_inflight"] + 2)
        client.reconnect_delay_set(1, max(1, int(settings["retry_max"])))
        if settings["username"]:
            client.username_pw_set(settings["username"], settings["password"] or None)
        if buffer._status_topic:
            client.will_set(buffer._status_topic, "offline", qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self.client = client

    def open(self) -> None:
        """Connect and wait for the broker's CONNACK; raises AuthError or TransientError."""
        buffer, settings = self.buffer, self.buffer.settings
        where, timeout = buffer._where, settings["timeout"]
        if settings["tls"]:
            self.client.tls_set_context(buffer._tls_context())
            if not settings["verify_tls"]:
                self.client.tls_insecure_set(True)
        try:
            self.client.connect(settings["host"], buffer._port, settings["keepalive"])
        except ssl.SSLCertVerificationError as exc:
            raise AuthError(f"TLS certificate of {where} not trusted: {exc.verify_message} "
                            f"(set ca_file to trust a private CA)") from None
        except ssl.SSLError as exc:
            if "CERTIFICATE" in str(exc).upper():
                raise AuthError(f"TLS handshake with {where} refused: {exc.reason or exc} "
                                f"(does the broker want a client certificate: certfile, keyfile?)") from None
            raise TransientError(f"TLS handshake with {where} failed: {exc.reason or exc}") from None
        except socket.timeout:
            raise TransientError(f"no answer from {where} within {timeout:g} s") from None
        except OSError as exc:
            raise TransientError(f"cannot connect to {where}: {(exc.strerror or str(exc)).lower()}") from None
        except ValueError as exc:   # paho's own checks (host, port)
            raise AuthError(f"cannot connect to {where}: {exc}") from None
        self.client.loop_start()
        with self.cond:
            if not self.cond.wait_for(lambda: self.connack is not None or self.drops, timeout):
                raise TransientError(f"{where} accepted the connection but did not answer "
                                     f"CONNECT within {timeout:g} s")
            connack = self.connack
        if connack is None:
            raise TransientError(f"{where} closed the connection before answering CONNECT")
        if connack.is_failure:
            reason = str(connack)
            if reason in REFUSALS:
                raise AuthError(f"{where} refused the connection: {REFUSALS[reason]} ({reason})")
            raise TransientError(f"{where} refused the connection: {reason}")

    def publish_all(self, messages: List[Message], qos: int, window: int, timeout: float) -> None:
        """Publish ``messages`` in order, at most ``window`` unacknowledged at a time, and return
        once every one is acknowledged. TransientError on a lost connection, or when no
        acknowledgement came for ``timeout`` seconds."""
        client, where = self.client, self.buffer._where
        outstanding: set = set()
        index, total = 0, len(messages)
        drops = self.drops
        deadline = time.monotonic() + timeout
        while True:
            while index < total and len(outstanding) < window:
                topic, payload, retain = messages[index]
                info = client.publish(topic, payload, qos, retain)
                if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    raise TransientError(f"lost the connection to {where} "
                                         f"({mqtt.error_string(info.rc)})")
                outstanding.add(info.mid)
                index += 1
            with self.cond:
                # Every id we published is in ``outstanding`` by now: other ids in ``acked``
                # are the status messages', and are forgotten here.
                done = outstanding & self.acked
                self.acked.clear()
                if done:
                    outstanding -= done
                    deadline = time.monotonic() + timeout
                if not outstanding and index == total:
                    return
                if index < total and len(outstanding) < window:
                    continue
                if not self.connected or self.drops != drops:
                    raise TransientError(f"lost the connection to {where} with {len(outstanding)} "
                                         f"messages unacknowledged")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TransientError(f"{where} acknowledged nothing for {timeout:g} s "
                                         f"({len(outstanding)} messages unacknowledged)")
                self.cond.wait(remaining)

    def close(self, clean: bool) -> None:
        """Disconnect and stop paho's thread; ``clean``: publish the "offline" status first."""
        client, topic = self.client, self.buffer._status_topic
        if clean and self.connected and topic:
            info = client.publish(topic, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(CLOSE_WAIT)
            except (RuntimeError, ValueError):
                pass
        client.disconnect()
        client.loop_stop()

    # -- paho's callbacks (its network thread) -----------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            self._after_connect(client)
        # Only now is the connection the sender's: what the broker must see first (the TX
        # subscription, "online", Home Assistant's configs) is queued ahead of any reading.
        with self.cond:
            self.connack = reason_code
            self.connected = not reason_code.is_failure
            self.cond.notify_all()

    def _after_connect(self, client) -> None:
        buffer = self.buffer
        try:
            # Subscribe first: the broker takes a client's packets in order, so whoever sees
            # "online" can count on the TX topic being listened to.
            for topic in buffer.subscriptions():
                client.subscribe(topic, qos=buffer.settings["qos"])
            if buffer._status_topic:
                client.publish(buffer._status_topic, "online", qos=1, retain=True)
            if buffer._ha is not None:   # the broker may have lost them (no persistence)
                for topic, payload, retain in buffer._ha.everything(states=False):
                    self._publish_extra(topic, payload, retain)
        except Exception:   # paho would end its thread on an exception
            self.log.exception("%s: after connecting", buffer)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self.cond:
            was_connected, self.connected = self.connected, False
            self.drops += 1
            self.cond.notify_all()
        if was_connected:
            self.log.debug("%s: connection to %s closed (%s)", self.buffer, self.buffer._where, reason_code)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self.cond:
            self.acked.add(mid)
            self.cond.notify_all()

    def _publish_extra(self, topic: str, payload: str, retain: bool) -> None:
        """Publish beside the batches (Home Assistant's configs and states); paho queues them."""
        self.client.publish(topic, payload, qos=self.buffer.settings["qos"], retain=retain)

    def _on_message(self, client, userdata, message) -> None:
        try:
            self.buffer.on_message(message, self._publish_extra)
        except Exception:   # paho would end its thread on an exception
            self.log.exception("%s: handling a message on %s", self.buffer, message.topic)
