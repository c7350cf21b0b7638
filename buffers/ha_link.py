"""What the MQTT buffer tells Home Assistant: discovery configs, and states without a backlog.

``Discovery`` (``protocols/ha_discovery.py``) decides the retained config messages; this class
adds what only a live connection knows, and is the one object the sender thread and paho's
network thread share (hence the lock):

* **Units.** A frame's inputs are classified from the units the gateway knows for them
  (``input_units``): ``[nodes]`` ``units``, the built-in node template the node is named after
  (``emonTx4_17`` -> ``emonTx4``), and units a listener declared for its node (device presets
  of Modbus and M-Bus meters, ``UnitBook``).
* **States: the latest value only.** Home Assistant stamps an MQTT state with the time it
  arrives. A backlog replayed after an outage would put hours of readings at "now", so the
  state topics (``<base>/<node>/<input>``, the nodevar format) are published only when the
  buffer has caught up (the batch just sent was the last one queued), with the latest value of
  each input; the readings in between go to the JSON topics, with their time, as always. A
  live gateway is always caught up: each reading's states go out with it.
* **Home Assistant restarts** (``online`` on its status topic, seen on paho's thread) and
  **new connections** (a broker restarted without persistence has lost the retained configs):
  every config again (and, for Home Assistant, the latest states), so it shows values at once.
* **States are retained**: Home Assistant subscribes to a state topic when a config arrives,
  possibly after the first state was published; a retained state is given to it then, and
  after its restart. ``availability`` (the gateway's last will) marks them unavailable when
  the gateway is gone, so a retained state is never shown as live.
* **A node removed from ``[nodes]``**: an empty retained config deletes its device. While the
  gateway runs, a reload says which nodes left. For a config edited while it was stopped, the
  broker remembers: a retained *manifest* (``<base>/gateway/ha_nodes``, the configured nodes
  Home Assistant was told about) is read back at each connection and compared with
  ``[nodes]``.
"""

import json
import threading
from collections import OrderedDict
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from gateway.formats import number_text
from protocols.ha_discovery import Discovery, DiscoveryConfig, state_topic
from gateway.frame import Frame, Node
from gateway.node_templates import TEMPLATES
from gateway.units import UnitBook

Message = Tuple[str, str, bool]   # topic, payload, retained
Units = Mapping[str, Optional[str]]


_TEMPLATE_UNITS = {t.name: dict(zip(t.names, t.units)) for t in TEMPLATES}


def input_units(table, node: Node, declared: Optional[UnitBook] = None) -> Dict[str, str]:
    """The units the gateway knows for ``node``'s inputs: a listener's declared ones, then
    ``[nodes]`` (the frame carries the nodename, the table may be keyed by id), then the
    built-in template the node is named after (emonhub's ``<template>_<nodeid>``)."""
    template = template_of(node)
    units: Dict[str, str] = dict(_TEMPLATE_UNITS[template]) if template else {}
    spec = _spec_of(table, node)
    if spec is not None and spec.rx.units:
        units.update({n: u for n, u in zip(spec.rx.names, spec.rx.units) if u})
    if declared is not None:
        units.update(declared.units(node))
    return units


def template_of(node: Node) -> Optional[str]:
    """The built-in template a node is named after (``emonTx4_17`` -> ``emonTx4``), or None."""
    if isinstance(node, str) and "_" in node:
        name = node.rsplit("_", 1)[0]
        return name if name in _TEMPLATE_UNITS else None
    return None


def _spec_of(table, node: Node):
    if table is None:
        return None
    spec = table.get(node)
    if spec is None:
        node_id = table.node_id(node)
        spec = table.get(node_id) if node_id != node else None
    return spec


def configured_nodes(table) -> set:
    """The names frames of ``table``'s nodes carry (nodename, else the id)."""
    if table is None:
        return set()
    names = set()
    for key in table.describe():
        spec = _spec_of(table, _as_node(key))
        if spec is not None:
            names.add(spec.nodename if spec.nodename is not None else spec.node)
    return names


def _as_node(key: str) -> Node:
    return int(key) if key.isdigit() else key


class HomeAssistantLink:
    """Discovery configs and latest-only states for one MQTT buffer (see the module)."""

    def __init__(self, config: DiscoveryConfig, units_of: Callable[[Node], Units]):
        self.config = config
        self.discovery = Discovery(config)
        self.manifest_topic = f"{config.base_topic}/gateway/ha_nodes"
        self._units_of = units_of
        self._lock = threading.Lock()
        self._pending: "OrderedDict[Tuple[Node, str], str]" = OrderedDict()   # held back
        self._latest: "OrderedDict[Tuple[Node, str], str]" = OrderedDict()    # last sent
        self.held_back = 0      # state values never sent: superseded during a backlog

    # -- the sender thread --------------------------------------------------------------
    def before(self, frame: Frame) -> List[Message]:
        """Discovery messages to publish before ``frame``'s own (usually none)."""
        template = template_of(frame.node)
        with self._lock:
            found = self.discovery.observe(frame, units=self._units_of(frame.node), model=template,
                                           manufacturer="OpenEnergyMonitor" if template else None)
        return [(topic, payload, True) for topic, payload in found]

    def states(self, frames: Iterable[Frame], caught_up: bool) -> List[Message]:
        """The state messages for a batch: none while a backlog is still queued behind it (the
        values are held, the latest per input), else the latest value of every input held."""
        base = self.config.base_topic
        with self._lock:
            for frame in frames:
                for name, value in frame.named_values().items():
                    key = (frame.node, name)
                    if key in self._pending:
                        self.held_back += 1
                        del self._pending[key]
                    self._pending[key] = number_text(value)
            if not caught_up:
                return []
            messages = [(state_topic(base, node, name), text, True)
                        for (node, name), text in self._pending.items()]
            self._latest.update(self._pending)
            self._pending.clear()
        return messages

    def removed(self, nodes: Iterable[Node]) -> List[Message]:
        """Empty retained configs for nodes removed from the config."""
        messages: List[Message] = []
        with self._lock:
            for node in nodes:
                messages += [(topic, "", True) for topic, _ in self.discovery.remove(node)]
                for key in [k for k in self._latest if k[0] == node]:
                    del self._latest[key]
        return messages

    def manifest(self, nodes: Iterable[Node]) -> Message:
        """The retained list of the configured ``nodes`` (what a later start compares with)."""
        return (self.manifest_topic, json.dumps(sorted(str(n) for n in nodes)), True)

    # -- any thread ---------------------------------------------------------------------
    def reconcile(self, payload: str, nodes: Iterable[Node]) -> Tuple[List[Message], List[Node]]:
        """The manifest the broker kept (an earlier run's, or this one's coming back): empty
        configs for the nodes it lists that ``nodes`` (the configured ones) lacks, and the new
        manifest when it differs; also the nodes removed."""
        try:
            listed = json.loads(payload) if payload else []
        except ValueError:
            listed = []
        if not isinstance(listed, list):
            listed = []
        listed = {str(n) for n in listed}
        nodes = list(nodes)
        current = {str(n) for n in nodes}
        gone = [_as_node(n) for n in sorted(listed - current)]
        messages = self.removed(gone)
        if listed != current:
            messages.append(self.manifest(nodes))
        return messages, gone

    def everything(self, states: bool = True) -> List[Message]:
        """Every config again, and with ``states`` the latest states (Home Assistant restarted;
        a new connection, to a broker that may have lost its retained messages, needs only
        the configs: the next batch brings states)."""
        base = self.config.base_topic
        with self._lock:
            messages = [(topic, payload, True) for topic, payload in self.discovery.republish()]
            if states:
                messages += [(state_topic(base, node, name), text, True)
                             for (node, name), text in self._latest.items()]
        return messages

    @property
    def published(self) -> int:
        return self.discovery.published
