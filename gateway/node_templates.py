"""Built-in node templates: the packet layouts of OpenEnergyMonitor's own radio nodes.

emonhub's ``autoconf`` fills in ``[nodes]`` for OEM hardware from its ``conf/available.conf``;
these are the same templates, so a node nobody described still decodes with the names, scales
and units (and the ``<template>_<nodeid>`` node name) emonhub gives it, and a user's emoncms
inputs, MQTT topics and dashboards are the same under either program.

Matching a radio packet from a node that has no ``[nodes]`` section (numeric nodes and byte
payloads only; text sources name their own values):

1. the templates whose byte count (the sum of their struct sizes) equals the packet's;
2. among those, the first, in file order, that lists the node id;
3. else the first of that size, in file order.

This is emonhub's rule, kept as it is so that the same hardware gets the same names. Two
things differ, neither of which changes a name:

* A rule-3 match is a *guess* when the templates of that size disagree on the layout (for
  example 46 bytes from node 19 fit ``emon_DB_6CT_1phase`` and ``emonTx6_3phase``). emonhub
  picks the first silently; ``Match.guessed`` and ``Match.alternatives`` say so, so the
  gateway can tell the user once which templates fit and how to pin the right one.
* emonhub reads a ``nodeids`` written without a comma (``nodeids = 27``) as the digits 2 and 7.
  Here the node ids are the ones the file means (27, and 18 for ``emonTx6_temp_pulse``); as
  both templates come first among their size, no packet is matched differently.

The 46-byte packet from node 17 (the case of an emonTx4/5 running ``emon_DB_6CT`` 1-phase
firmware renumbered to 17, which gets ``emonTx6_3phase``'s names) is not changed: node 17 is
the default of the emonTx6/emonPi3 (emon32) firmware, whose first packet (message number,
three voltages, six powers, six energies: 46 bytes) is exactly ``emonTx6_3phase``; nothing in
the bytes tells the two apart, so emonhub's answer is the right one for the hardware that sends
46 bytes from node 17 by default. The renumbered board is described in ``[nodes]``, as OEM's
own emonHP config does (``[[17]] nodename = emon_DB_6CT_1phase_17``).

A node keeps the template it was first matched to (emonhub writes the match into its config):
``TemplateMatcher`` remembers it, so a packet of another size from that node is reported by the
decoder as not fitting, rather than renaming the node's inputs.
"""

from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from gateway.frame import Node
from gateway.nodes import SIZES, Layout, NodeSpec


@dataclass(frozen=True)
class Template:
    """One node layout of ``available.conf``: ``name`` is its section, ``nodeids`` the nodes
    that send it by default."""

    name: str
    nodeids: Tuple[int, ...]
    names: Tuple[str, ...]
    datacodes: Tuple[str, ...]
    scales: Tuple[float, ...]
    units: Tuple[str, ...]
    whitening: bool = False

    @property
    def size(self) -> int:
        """The payload's byte count: the sum of the datacodes' little-endian struct sizes."""
        return sum(SIZES[code] for code in self.datacodes)

    @property
    def layout(self) -> Layout:
        # Scales past the end of ``scales`` are 1 (two templates list fewer scales than
        # values); Layout.scale_for does exactly that, as emonhub does.
        return Layout(names=self.names, datacodes=self.datacodes, scales=self.scales,
                      units=self.units)

    def nodename(self, node: int) -> str:
        """The node name emonhub writes for a node matched to this template: ``emonTx4_17``."""
        return f"{self.name}_{node}"

    def spec(self, node: int) -> NodeSpec:
        """The ``[nodes]`` entry emonhub's autoconf writes for ``node``, as a NodeSpec."""
        return NodeSpec(node, self.nodename(node), self.layout, whitening=self.whitening)

    def same_layout(self, other: "Template") -> bool:
        """True if both decode every packet to the same names, values and units."""
        return self._decoding() == other._decoding()

    def _decoding(self) -> tuple:
        scales = tuple(self.layout.scale_for(i) for i in range(len(self.datacodes)))
        return self.names, self.datacodes, scales, self.units, self.whitening


def _t(name: str, nodeids: Sequence[int], names: str, datacodes: str, scales: str, units: str,
       whitening: bool = False) -> Template:
    """A template from available.conf's comma-separated values."""
    split = lambda text: tuple(item.strip() for item in text.split(","))
    return Template(name, tuple(nodeids), split(names), split(datacodes),
                    tuple(float(s) for s in split(scales)), split(units), whitening)


_P6, _E6 = "P1, P2, P3, P4, P5, P6", "E1, E2, E3, E4, E5, E6"

TEMPLATES: Tuple[Template, ...] = (
    _t("emonpi", [5],
       "power1, power2, power1pluspower2, vrms, t1, t2, t3, t4, t5, t6, pulsecount",
       "h, h, h, h, h, h, h, h, h, h, L",
       "1, 1, 1, 0.01, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 1",
       "W, W, W, V, C, C, C, C, C, C, p"),
    _t("emonpiCM", [5],
       "Msg, power1, power2, power1pluspower2, vrms, t1, t2, t3, t4, t5, t6, pulse1count, "
       "pulse2count, E1, E2",
       "L, h, h, h, h, h, h, h, h, h, h, L, L, l, l",
       "1, 1, 1, 1, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 1, 1, 1, 1",
       "n, W, W, W, V, C, C, C, C, C, C, p, p, Wh, Wh"),
    _t("emontxshield", [6],
       "power1, power2, power3, power4, vrms",
       "h, h, h, h, h",
       "1, 1, 1, 1, 0.01",
       "W, W, W, W, V"),
    _t("emontx3_discreet", [7, 8, 9, 10],
       "power1, power2, power3, power4, vrms, temp1, temp2, temp3, temp4, temp5, temp6, pulse",
       "h, h, h, h, h, h, h, h, h, h, h, L",
       "1, 1, 1, 1, 0.01, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 1",
       "W, W, W, W, V, C, C, C, C, C, C, p"),
    _t("emontx3_3phase", [11, 12, 13, 14],
       "powerL1, powerL2, powerL3, power4, Vrms, temp1, temp2, temp3, temp4, temp5, temp6, pulse",
       "h, h, h, h, h, h, h, h, h, h, h, L",
       "1, 1, 1, 1, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 1",
       "W, W, W, W, V, C, C, C, C, C, C, p"),
    _t("emontx3_cm", [15, 16],
       "MSG, Vrms, P1, P2, P3, P4, E1, E2, E3, E4, T1, T2, T3, pulse",
       "L, h, h, h, h, h, l, l, l, l, h, h, h, L",
       "1, 0.01, 1, 1, 1, 1, 1, 1, 1, 1, 0.01, 0.01, 0.01, 1",
       "n, V, W, W, W, W, Wh, Wh, Wh, Wh, C, C, C, p", whitening=True),
    _t("emontx3_cm_rf69n", [15, 16],
       "MSG2, Vrms, P1, P2, P3, P4, E1, E2, E3, E4, T1, T2, T3, pulse",
       "L, h, h, h, h, h, l, l, l, l, h, h, h, L",
       "1, 0.01, 1, 1, 1, 1, 1, 1, 1, 1, 0.01, 0.01, 0.01, 1",
       "n, V, W, W, W, W, Wh, Wh, Wh, Wh, C, C, C, p"),
    _t("emonth1", [19, 20, 21, 22],
       "temperature, external temperature, humidity, battery",
       "h, h, h, h",
       "0.1, 0.1, 0.1, 0.1",
       "C, C, %, V"),
    _t("emonth2", [23, 24, 25, 26],
       "temperature, external temperature, humidity, battery, pulsecount",
       "h, h, h, h, L",
       "0.1, 0.1, 0.1, 0.1, 1",
       "C, C, %, V, p"),
    _t("emonTx4", [17, 18],
       f"MSG, Vrms, {_P6}, {_E6}, T1, T2, T3, pulse",
       "L, h, h, h, h, h, h, h, l, l, l, l, l, l, h, h, h, L",
       "1, 0.01, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0.01, 0.01, 0.01, 1",
       "n, V, W, W, W, W, W, W, Wh, Wh, Wh, Wh, Wh, Wh, C, C, C, p"),
    _t("emonTx4_3phase", [27],
       f"MSG, V1, V2, V3, {_P6}, {_E6}, pulse",
       "L, h, h, h, h, h, h, h, h, h, l, l, l, l, l, l, L",
       "1, 0.01, 0.01, 0.01, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1",          # 15 scales, 17 values
       "n, V, V, V, W, W, W, W, W, W, Wh, Wh, Wh, Wh, Wh, Wh, p"),
    _t("emon_DB_6CT_1phase", [27],
       f"MSG, V1, {_P6}, {_E6}, pulse",
       "L, h, h, h, h, h, h, h, l, l, l, l, l, l, L",
       "1, 0.01, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1",                      # 13 scales, 15 values
       "n, V, W, W, W, W, W, W, Wh, Wh, Wh, Wh, Wh, Wh, p"),
    _t("EmonTx4DB_rf1", [28],
       f"MSG, Vrms1, Vrms2, Vrms3, {_P6}, {_E6}, pulse, Analog",
       "L, h, h, h, h, h, h, h, h, h, l, l, l, l, l, l, L, H",
       "1, 0.01, 0.01, 0.01, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1",
       "n, V, V, V, W, W, W, W, W, W, Wh, Wh, Wh, Wh, Wh, Wh, p, n"),
    _t("EmonTx4DB_rf2", [29],
       "MSG, Vrms2, Vrms3, P7, P8, P9, P10, P11, P12, E7, E8, E9, E10, E11, E12, digPulse, anaPulse",
       "L, h, h, h, h, h, h, h, h, l, l, l, l, l, l, L, L",
       "1, 0.01, 0.01, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1",
       "n, V, V, W, W, W, W, W, W, Wh, Wh, Wh, Wh, Wh, Wh, p, p"),
    # "T7" twice is in emonhub's file: its outputs then carry one T7, the ninth value.
    _t("emonTx6_temp_pulse", [18],
       "MSG, T1, T2, T3, T4, T5, T6, T7, T7, pulse1, pulse2, pulse3",
       "L, h, h, h, h, h, h, h, h, L, L, L",
       "1, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 1, 1, 1",
       "n, C, C, C, C, C, C, C, C, p, p, p"),
    _t("emonTx6_3phase", [17, 18],
       f"MSG, Vrms1, Vrms2, Vrms3, {_P6}, {_E6}",
       "L, h, h, h, h, h, h, h, h, h, l, l, l, l, l, l",
       "1, 0.01, 0.01, 0.01, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1",
       "n, V, V, V, W, W, W, W, W, W, Wh, Wh, Wh, Wh, Wh, Wh"),
)
"""emonhub's ``conf/available.conf`` (v2.7.19), in its order: the order decides ties."""


def by_name(name: str, templates: Iterable[Template] = TEMPLATES) -> Template:
    """The template called ``name`` (as in available.conf); KeyError names the choices."""
    for template in templates:
        if template.name == name:
            return template
    raise KeyError(f"no built-in node template {name!r} (there are "
                   f"{', '.join(t.name for t in templates)})")


@dataclass(frozen=True)
class Match:
    """The template chosen for a node's packets, and how sure the choice is."""

    template: Template
    node: int
    claimed: bool                          # the template lists the node id
    alternatives: Tuple[Template, ...] = ()  # same size, another layout (only when not claimed)

    @property
    def guessed(self) -> bool:
        """True when no template of this size lists the node and they disagree on the layout."""
        return not self.claimed and bool(self.alternatives)

    @property
    def spec(self) -> NodeSpec:
        return self.template.spec(self.node)

    def describe(self) -> str:
        """One line for the log: what was matched and, for a guess, what else fits."""
        text = (f"node {self.node}: {self.template.size}-byte packets decoded with the built-in "
                f"template {self.template.name} (as {self.template.nodename(self.node)})")
        if self.guessed:
            others = ", ".join(t.name for t in self.alternatives)
            text += (f"; no template of that size is meant for node {self.node}, and {others} "
                     f"also fit{'s' if len(self.alternatives) == 1 else ''}: if the names are "
                     f"wrong, describe the node in [nodes] [[{self.node}]]")
        return text


def match(node: Node, size: int, templates: Sequence[Template] = TEMPLATES) -> Optional[Match]:
    """The template for a ``size``-byte packet from ``node`` (emonhub's rule, see the module),
    or None: no template has that size, or ``node`` is a name (text sources are never matched)."""
    if not isinstance(node, int) or isinstance(node, bool):
        return None
    fitting = [t for t in templates if t.size == size]
    if not fitting:
        return None
    for template in fitting:
        if node in template.nodeids:
            return Match(template, node, claimed=True)
    first = fitting[0]
    others = tuple(t for t in fitting[1:] if not first.same_layout(t))
    return Match(first, node, claimed=False, alternatives=others)


class TemplateMatcher:
    """Chooses and remembers each undescribed node's template (emonhub writes its choice into
    ``[nodes]``, so it never changes); for the node decoder.

    ``spec_for`` is called with a radio packet's node and byte count when ``[nodes]`` has no
    section for the node. The first match sticks: a later packet of another size gets the same
    spec, which the decoder then reports as not fitting. ``announce`` is called once per new
    match (to log ``Match.describe()``). Memory is bounded by the node ids (0-255) and the sizes
    seen without a match.
    """

    MAX_UNMATCHED = 4096

    def __init__(self, templates: Sequence[Template] = TEMPLATES,
                 announce: Optional[Callable[[Match], None]] = None):
        self.templates = tuple(templates)
        self._announce = announce
        self._matched: Dict[int, Match] = {}
        self._unmatched: set = set()     # (node, size) seen without a template

    def spec_for(self, node: Node, size: int) -> Optional[NodeSpec]:
        """The NodeSpec to decode this packet with, or None to decode it as without templates."""
        found = self.match_for(node, size)
        return found.spec if found is not None else None

    def match_for(self, node: Node, size: int) -> Optional[Match]:
        """Like ``spec_for``, with the whole Match."""
        known = self._matched.get(node) if isinstance(node, int) else None
        if known is not None:
            return known
        if (node, size) in self._unmatched:
            return None
        found = match(node, size, self.templates)
        if found is None:
            if isinstance(node, int) and len(self._unmatched) < self.MAX_UNMATCHED:
                self._unmatched.add((node, size))
            return None
        self._matched[node] = found
        if self._announce is not None:
            self._announce(found)
        return found

    def matches(self) -> Dict[int, Match]:
        return dict(self._matched)

    def forget(self, nodes: Iterable[int] = ()) -> None:
        """Forget the given nodes' matches (all when none given): after ``[nodes]`` changed."""
        nodes = list(nodes)
        if not nodes:
            self._matched.clear()
        for node in nodes:
            self._matched.pop(node, None)
        self._unmatched.clear()

    def describe(self) -> Dict[str, dict]:
        """The matches as plain data, for ``--show-settings`` and the status."""
        return {str(node): {"template": m.template.name, "nodename": m.template.nodename(node),
                            "guessed": m.guessed}
                for node, m in sorted(self._matched.items())}


def templates_of_size(size: int, templates: Sequence[Template] = TEMPLATES) -> List[Template]:
    """The templates whose packets are ``size`` bytes, in file order."""
    return [t for t in templates if t.size == size]


def template_node_name(name: str, templates: Sequence[Template] = TEMPLATES) -> bool:
    """Whether ``name`` is a node name a template gives (``emonTx4_17``: template, node id)."""
    base, _, node = name.rpartition("_")
    return node.isdigit() and int(node) <= 255 and any(t.name == base for t in templates)
