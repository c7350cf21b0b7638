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
from buffers.formats import json_time, number_text
from gateway.frame import Frame, FrameError, parse_node, parse_number
from gateway.logs import LogThrottle

FORMATS = ("json", "nodevar", "csv")
NODE_PLACEHOLDER = "{node}"
BASE_PLACEHOLDER = "{base}"
CLOSE_WAIT = 2.0   # s a clean close waits for the broker to take the "offline" status
# CONNACK refusals that no retry will cure until the settings change
_REFUSALS = {"Bad user name or password": "wrong username or password",
             "Not authorized": "not authorised (check username and password)",
             "Client identifier not valid": "client_id refused",
             "Unsupported protocol version": "MQTT 3.1.1 not supported"}
_LOOPBACK = ("localhost", "127.0.0.1", "::1")

Message = Tuple[str, str]   # topic, payload


class MqttBuffer(Buffer):
    SPEC = """
    host = string(default='localhost')
    port = integer(min=1, max=65535, default=None)
    username = string(default='')
    password = string(default='')
    client_id = string(default='')
    keepalive = integer(min=5, max=65535, default=60)
    tls = boolean(default=False)
    ca_file = path(default='')
    certfile = path(default='')
    keyfile = path(default='')
    verify_tls = boolean(default=True)
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
    """
    SAMPLE = """
    # Publishes readings to an MQTT broker (Mosquitto; Home Assistant, Node-RED and emoncms'
    # MQTT input read them) in emonhub's topic formats, and passes radio commands back. A
    # reading counts as delivered once the broker has acknowledged it (QoS 1).
    [[...]]
    host = localhost
    # 1883, or 8883 with tls = True.
    # port = 1883
    username
    # Never logged nor shown.
    password
    # TLS: encrypt, and check the broker's certificate against the system's CAs (or
    # ca_file, a private CA's PEM file). certfile, keyfile: a client certificate, for a
    # broker that asks for one. verify_tls = False skips the check (and says what it costs).
    tls
    ca_file
    certfile
    keyfile
    verify_tls
    # Default: oemgateway-<hostname>-<this section's name>.
    client_id
    keepalive
    # 1: a reading is delivered when the broker acknowledges it (nothing is lost);
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
    # The radio listener that transmits (empty: every rfm2pi/rfm12pi listener).
    tx_listener
    # Messages sent ahead of the broker's acknowledgements.
    max_inflight
    # Seconds without an answer from the broker before reconnecting.
    timeout
    """
    SECRETS = ("password",)

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
        if (settings["certfile"] or settings["keyfile"]) and not settings["tls"]:
            problems.append("certfile/keyfile need tls = True")
        if settings["keyfile"] and not settings["certfile"]:
            problems.append("keyfile needs certfile (the client certificate)")
        return problems

    @classmethod
    def warn_settings(cls, settings: dict) -> List[str]:
        warnings = []
        if settings["tls"] and not settings["verify_tls"]:
            warnings.append("verify_tls = False: the broker's certificate is not checked, so anyone "
                            "on the network path can read or alter what is sent (use ca_file to "
                            "trust a private CA instead)")
        if not settings["tls"] and settings["ca_file"]:
            warnings.append("ca_file is only used with tls = True")
        if settings["password"] and not settings["tls"] and settings["host"] not in _LOOPBACK:
            warnings.append(f"the password travels in clear to {settings['host']}: set tls = True "
                            "if the broker offers it")
        if settings["qos"] == 0:
            warnings.append("qos = 0: readings count as delivered once written to the network; "
                            "a broker restart or a network cut can lose some")
        return warnings

    def __init__(self, *args, **kwargs):
        self._connection: Optional[_Connection] = None
        self._tx_log: Optional[LogThrottle] = None
        super().__init__(*args, **kwargs)

    # -- plugin hooks -------------------------------------------------------------------
    def configure(self) -> None:
        settings = self.settings
        self._formats = [f.strip().lower() for f in settings["formats"] if f.strip()]
        self._base = settings["base_topic"].strip("/")
        self._csv_base = settings["csv_base_topic"].strip("/")
        self._status_topic = settings["status_topic"].replace(BASE_PLACEHOLDER, self._base).strip("/")
        self._tx_levels = settings["tx_topic"].strip("/").split("/") if settings["tx_topic"] else None
        tls = settings["tls"]
        self._port = settings["port"] or (8883 if tls else 1883)
        self._where = f"{'mqtts' if tls else 'mqtt'}://{settings['host']}:{self._port}"
        self._client_id = settings["client_id"] or f"oemgateway-{socket.gethostname()}-{self.name}"
        if self._tx_log is None:
            self._tx_log = LogThrottle(self.log, logging.WARNING, 60.0)
            self._retained_log = LogThrottle(self.log, logging.WARNING, 3600.0)
        if self._connection is not None:   # new settings (on the sender thread): reconnect
            self._disconnect(clean=True)

    def send(self, batch: List[Frame]) -> None:
        connection = self._connect()
        messages = [message for frame in batch for message in self._messages(frame)]
        try:
            connection.publish_all(messages, self.settings["qos"], self.settings["retain"],
                                   self.settings["max_inflight"], self.settings["timeout"])
        except TransientError:
            self._disconnect(clean=False)   # paho must not re-send what it still holds
            raise

    def close_transport(self) -> None:
        self._disconnect(clean=True)
        self._tx_log.flush()
        self._retained_log.flush()

    # -- messages -----------------------------------------------------------------------
    def _messages(self, frame: Frame) -> List[Message]:
        """The messages of one reading, in the configured formats."""
        named = frame.named_values()
        out: List[Message] = []
        for fmt in self._formats:
            if fmt == "json":
                payload = dict(named, time=json_time(frame.time))
                out.append((f"{self._base}/{frame.node}", json.dumps(payload, separators=(",", ":"))))
            elif fmt == "nodevar":
                out += [(f"{self._base}/{frame.node}/{name}", number_text(value))
                        for name, value in named.items()]
            else:
                values = list(frame.values) + ([frame.rssi] if frame.rssi is not None else [])
                node_id = self.nodes.table.node_id(frame.node) if self.nodes is not None else frame.node
                out.append((f"{self._csv_base}/rx/{node_id}/values", ",".join(map(number_text, values))))
        return out

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
        settings = self.settings
        try:
            context = ssl.create_default_context(cafile=settings["ca_file"] or None)
            if settings["certfile"]:
                context.load_cert_chain(settings["certfile"], settings["keyfile"] or None)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise AuthError(f"cannot load the TLS files (ca_file, certfile, keyfile): {exc}") from None
        if not settings["verify_tls"]:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    # -- receiving (paho's thread) ------------------------------------------------------
    def subscriptions(self) -> List[str]:
        if self._tx_levels is None:
            return []
        return ["/".join("+" if level == NODE_PLACEHOLDER else level for level in self._tx_levels)]

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
                             clean_session=True, protocol=mqtt.MQTTv311)
        client.connect_timeout = settings["timeout"]
        # Room for the window of readings plus the two status messages; never more: a message
        # beyond it is refused (MQTT_ERR_QUEUE_SIZE), not queued by paho.
        client.max_inflight_messages_set(settings["max_inflight"] + 2)
        client.max_queued_messages_set(settings["max_inflight"] + 2)
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
            if reason in _REFUSALS:
                raise AuthError(f"{where} refused the connection: {_REFUSALS[reason]} ({reason})")
            raise TransientError(f"{where} refused the connection: {reason}")

    def publish_all(self, messages: List[Message], qos: int, retain: bool, window: int,
                    timeout: float) -> None:
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
                topic, payload = messages[index]
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
        with self.cond:
            self.connack = reason_code
            self.connected = not reason_code.is_failure
            self.cond.notify_all()
        if reason_code.is_failure:
            return
        buffer = self.buffer
        try:
            # Subscribe first: the broker takes a client's packets in order, so whoever sees
            # "online" can count on the TX topic being listened to.
            for topic in buffer.subscriptions():
                client.subscribe(topic, qos=buffer.settings["qos"])
            if buffer._status_topic:
                client.publish(buffer._status_topic, "online", qos=1, retain=True)
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

    def _on_message(self, client, userdata, message) -> None:
        try:
            self.buffer.on_tx(message)
        except Exception:   # paho would end its thread on an exception
            self.log.exception("%s: handling a message on %s", self.buffer, message.topic)
