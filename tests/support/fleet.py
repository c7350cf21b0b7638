"""A fleet of gateways on one central broker, as docs/fleet.md sets it up, for the test and the
benchmark: sites, per-site users and ACLs, a persistent-session consumer (what Telegraf's
``mqtt_consumer`` is with ``persistent_session = true``), and the checks.

Each gateway runs in its own folder (its own spool) with a socket listener, an MQTT buffer
(``site``, ``persistent_session``, QoS 1, the site's own user) and a file buffer that records
every reading it was given: what was *sent*, to compare with what the consumer received.
"""

import csv
import json
import shutil
import signal
import textwrap
from pathlib import Path
from typing import Dict, List, Tuple

from tests.support.configs import socket_config
from tests.support.daemon import GatewayProcess, free_port, runtime_dir_for, send_lines
from tests.support.mosquitto import Broker, Subscriber

CONSUMER = "telegraf"
CONSUMER_ID = "telegraf-central"
# docs/fleet.md's ACL: each site writes only under its own name (and reads its TX topics);
# the consumer reads every site's readings.
ACL = """\
pattern write %u/#
pattern read %u/emonhub/tx/#

user telegraf
topic read +/emon/#
topic readwrite test/#
"""
NODES = ("emontx", "heatpump")


def users(sites) -> Dict[str, str]:
    return dict({site: f"{site}-secret" for site in sites}, **{CONSUMER: "consumer-secret"})


def central_broker(folder: Path, sites) -> Broker:
    return Broker(folder, users=users(sites), acl=ACL, persistence=True)


def gateway_config(site: str, broker_port: int, listen_port: int) -> str:
    return textwrap.dedent(socket_config(listen_port, f"""
    [[central]]
    type = mqtt
    host = 127.0.0.1
    port = {broker_port}
    username = {site}
    password = {site}-secret
    site = {site}
    persistent_session = True
    qos = 1
    retry_max = 0.5
    [[sent]]
    type = file
    path = sent.csv
    """, gateway="clock = trusted", loglevel="INFO"))


class Site:
    """One gateway process and its readings."""

    def __init__(self, name: str, folder: Path, broker_port: int):
        self.name = name
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config = folder / "oemgateway.conf"
        self.config.write_text(gateway_config(name, broker_port, self.port))
        self.process = GatewayProcess(self.config).wait_ready()
        self.sent = 0

    def send(self, count: int) -> None:
        """``count`` readings, alternating over the nodes, each with a value of its own."""
        lines = []
        for _ in range(count):
            i = self.sent
            lines.append(f"{NODES[i % len(NODES)]} {i}.25 {i % 7}\n")
            self.sent += 1
        send_lines(self.port, "".join(lines).encode())

    def recorded(self) -> List[Tuple[str, float, Tuple[float, ...]]]:
        """What the gateway was given, from its file buffer: (node, time, values)."""
        with open(self.folder / "sent.csv", newline="") as handle:
            rows = list(csv.reader(handle))
        return [(row[2], round(float(row[0]), 3), tuple(float(v) for v in row[3:])) for row in rows[1:]]

    def stop(self) -> None:
        self.process.stop()
        shutil.rmtree(runtime_dir_for(self.folder), ignore_errors=True)


def consumer(broker_port: int) -> Subscriber:
    """The central consumer: a persistent session, QoS 1, every site's JSON readings."""
    return Subscriber(broker_port, ["+/emon/+"], username=CONSUMER, password="consumer-secret",
                      client_id=CONSUMER_ID, clean_session=False)


def received(messages) -> Dict[str, List[Tuple[str, float, Tuple[float, ...]]]]:
    """The consumer's readings per site: (node, time, values), in arrival order."""
    out: Dict[str, list] = {}
    for m in messages:
        levels = m.topic.split("/")
        if len(levels) != 3 or levels[1] != "emon":
            continue   # the consumer's sync markers
        site, _, node = levels
        data = json.loads(m.payload)
        stamp = data.pop("time")
        out.setdefault(site, []).append((node, round(float(stamp), 3),
                                         tuple(float(v) for v in data.values())))
    return out


def run(folder: Path, sites=("site-a", "site-b", "site-c"), per_phase: int = 100) -> dict:
    """The fleet scenario: readings from every site while all is up, while the central broker
    restarts, and while the consumer is away; then what each site sent and the consumer got.

    Returns ``{site: {"sent", "recorded", "delivered", "duplicates", "missing", "altered"}}``.
    """
    broker = central_broker(folder / "broker", sites).start()
    fleet: List[Site] = []
    try:
        fleet = [Site(name, folder / name, broker.port) for name in sites]
        listener = consumer(broker.port)
        got: List = []

        def distinct(messages):
            return sum(len(set(v)) for v in received(messages).values())

        for site in fleet:
            site.send(per_phase)
        listener.wait(lambda m: distinct(m) >= per_phase * len(fleet), "phase 1", timeout=120)
        broker.stop(signal.SIGTERM)          # the central broker restarts ...
        for site in fleet:
            site.send(per_phase)             # ... while the sites go on reading
        broker.start()
        listener.subscribed(2)
        listener.wait(lambda m: distinct(m) >= 2 * per_phase * len(fleet), "phase 2", timeout=120)
        listener.close()                     # the consumer restarts ...
        got += listener.messages
        for site in fleet:
            site.send(per_phase)             # ... while the sites go on publishing
        listener = consumer(broker.port)     # the same client id: the session and its queue
        listener.wait(lambda m: distinct(got + m) >= 3 * per_phase * len(fleet), "phase 3", timeout=120)
        listener.sync()
        got += listener.messages
        listener.close()
        for site in fleet:
            site.stop()
        per_site = received(got)
        result = {}
        for site in fleet:
            recorded = site.recorded()
            arrived = per_site.get(site.name, [])
            result[site.name] = {
                "sent": site.sent, "recorded": len(recorded), "delivered": len(set(arrived) & set(recorded)),
                "duplicates": len(arrived) - len(set(arrived)),
                "missing": len(set(recorded) - set(arrived)),
                "altered": len(set(arrived) - set(recorded))}
        return result
    finally:
        for site in fleet:
            site.process.kill()
            shutil.rmtree(runtime_dir_for(site.folder), ignore_errors=True)
        broker.stop(signal.SIGKILL)
