"""Routing: which buffers take which readings.

By default every reading goes to every buffer. A buffer may take only some of them, with two
settings of its own (every buffer type has them)::

    from_listeners = serial, radio   # only readings from these listeners (section names)
    from_nodes = 10, emonTx4_17      # only readings of these nodes (id or nodename)

Both empty (the default): everything. Both set: a reading must match both. A node is matched
by its id and by its name (``[nodes]`` nodename, or the name a text source gives it), so
``from_nodes = 17`` and ``from_nodes = emonTx4_17`` both take node 17 once it is named.

emonhub routes with channels (``pubchannels``/``subchannels``); its config is translated into
``from_listeners`` (see ``gateway.emonhub``).

A rule that can match nothing (a listener that is not in the config, a node name no
``[nodes]`` section nor listener gives) is a warning when the config is read: a buffer that
would then receive nothing is said so.
"""

from dataclasses import dataclass
from typing import Callable, Dict, FrozenSet, Iterable, List, Mapping, Optional

from gateway.frame import Frame

ROUTING_SPEC = """
from_listeners = force_list(default=list())
from_nodes = force_list(default=list())
"""


@dataclass(frozen=True)
class Rule:
    """What one buffer takes: empty sets mean "any"."""

    listeners: FrozenSet[str] = frozenset()
    nodes: FrozenSet[str] = frozenset()

    @classmethod
    def of(cls, settings: Mapping) -> "Rule":
        def names(key):
            return frozenset(str(v).strip() for v in settings.get(key) or () if str(v).strip())
        return cls(names("from_listeners"), names("from_nodes"))

    @property
    def takes_everything(self) -> bool:
        return not self.listeners and not self.nodes

    def takes(self, frame: Frame, node_id=None) -> bool:
        if self.listeners and frame.source not in self.listeners:
            return False
        if self.nodes and str(frame.node) not in self.nodes and \
                (node_id is None or str(node_id) not in self.nodes):
            return False
        return True


class Router:
    """The buffers each reading is *not* for: ``skipped(frame)`` is empty (the common case,
    cheap) unless some buffer has a rule. ``node_id(name)`` gives a named node's id."""

    def __init__(self, node_id=None):
        self._rules: Dict[str, Rule] = {}
        self._node_id = node_id or (lambda node: node)

    def configure(self, buffers: Mapping[str, Mapping], node_id=None) -> None:
        """Take the rules of ``buffers`` (name -> settings)."""
        rules = {name: Rule.of(settings) for name, settings in buffers.items()}
        self._rules = {name: rule for name, rule in rules.items() if not rule.takes_everything}
        if node_id is not None:
            self._node_id = node_id

    def skipped(self, frame: Frame) -> FrozenSet[str]:
        if not self._rules:
            return frozenset()
        node_id = self._node_id(frame.node)
        return frozenset(name for name, rule in self._rules.items() if not rule.takes(frame, node_id))


def rule_warnings(buffers: Mapping[str, Mapping], listeners: Iterable[str], known_nodes: Iterable[str],
                  where=lambda buffer, key: f"[buffers] [[{buffer}]] {key}",
                  also_known: Callable[[str], bool] = lambda name: False) -> List[str]:
    """A warning for each rule naming a listener not in the config, or a node that no
    ``[nodes]`` section nor listener names (node ids 0-255 are always possible, and the names
    ``also_known`` accepts: built-in templates' ``emonTx4_17``); and for a buffer that can then
    receive nothing."""
    listeners = set(listeners)
    known = {str(n) for n in known_nodes}
    warnings = []
    for name, settings in buffers.items():
        rule = Rule.of(settings)
        missing = sorted(rule.listeners - listeners)
        if missing:
            nothing = rule.listeners <= set(missing)
            warnings.append(f"{where(name, 'from_listeners')}: {', '.join(missing)}: no listener of that "
                            f"name in the config (listeners: {', '.join(sorted(listeners)) or 'none'})"
                            + ("; this buffer receives nothing" if nothing else ""))
        unknown = sorted(n for n in rule.nodes if n not in known and not _is_node_id(n) and not also_known(n))
        if unknown:
            nothing = all(n in unknown for n in rule.nodes)
            warnings.append(f"{where(name, 'from_nodes')}: {', '.join(unknown)}: no [nodes] section or "
                            "listener gives a node that name (a node is matched by its id or its name)"
                            + ("; this buffer may receive nothing" if nothing else ""))
    return warnings


def _is_node_id(text: str) -> bool:
    return text.isdigit() and int(text) <= 255


def listener_node_names(listeners: Mapping[str, Mapping]) -> List[str]:
    """The node names text listeners give their readings: ``nodename``, else the section name."""
    names = []
    for name, settings in listeners.items():
        nodename: Optional[str] = settings.get("nodename") if hasattr(settings, "get") else None
        names.append(str(nodename) if nodename else name)
    return names
