"""Node decoding: the ``[nodes]`` section, compatible with emonhub's.

A radio board delivers a node's payload as bytes (a RawFrame); a text source delivers numbers
(a Frame). The decoder turns both into the Frame every buffer receives: bytes unpacked with the
node's little-endian struct codes, values scaled and named, the node renamed. It runs once, in
``Gateway.dispatch``, so every listener type gets the same decoding::

    [nodes]
        [[10]]
            nodename = emontx
            [[[rx]]]                       # emonhub's layout; the keys may also sit in [[10]]
                names = power1, power2, vrms
                datacodes = h, h, H
                scales = 1, 1, 0.01
                units = W, W, V
            [[[tx]]]                       # how values sent *to* node 10 are packed
                datacodes = b, b, h

Without a node section a radio payload is read as signed 16-bit pairs (the original gateway's
behaviour) and text values are kept as sent.
"""

import logging
import math
import struct
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from validate import VdtValueError

from gateway.frame import NAME_MAX, Frame, FrameError, Node, Number, RawFrame, input_name_problem, parse_node
from gateway.logs import LogThrottle, plural
from gateway.units import UnitBook

log = logging.getLogger("oemgateway.nodes")

SIZES = {"b": 1, "B": 1, "h": 2, "H": 2, "i": 4, "I": 4, "l": 4, "L": 4,
         "q": 8, "Q": 8, "f": 4, "d": 8}
AS_SENT = "0"            # datacode 0: the values are numbers already (or, from a radio, bytes)
RADIO_DEFAULT = "h"      # a radio payload of a node without datacodes: signed 16-bit pairs
TX_DEFAULT = "h"         # values sent to a node without [[[tx]]] datacodes (as emonhub does)
MAX_PAYLOAD = 66         # bytes in one RF12 packet
MSG_NAME = "msg"         # a per-node message counter (emonTx4, emonTx3 CM firmware)


class DecodeError(ValueError):
    """A payload that does not fit the node's layout; the message says what was expected."""


class EncodeError(ValueError):
    """Values that cannot be packed for a node; the message says which and why."""


# -- struct codes ---------------------------------------------------------------------------
def unpack(payload: bytes, datacode: str = RADIO_DEFAULT,
           datacodes: Optional[Sequence[str]] = None) -> Tuple[Number, ...]:
    """Values from payload bytes, little-endian standard sizes.

    ``datacodes`` gives one struct code per value and the payload must be exactly their size;
    otherwise ``datacode`` is used for every value and the payload must be a whole number of
    them (``0`` keeps each byte as a value). Raises DecodeError saying what was expected and
    what came; 32-bit floats are rounded to the 7 digits they hold; NaN and infinities raise.
    """
    if datacodes:
        codes = tuple(datacodes)
        need = sum(SIZES[c] for c in codes)
        if len(payload) != need:
            raise DecodeError(f"datacodes need {need} bytes, got {len(payload)}")
    elif datacode == AS_SENT:
        return tuple(payload)
    else:
        size = SIZES[datacode]
        if not payload or len(payload) % size:
            raise DecodeError(f"datacode {datacode} needs a multiple of {size} bytes, got {len(payload)}")
        codes = (datacode,) * (len(payload) // size)
    values = struct.unpack("<" + "".join(codes), payload)
    if "f" in codes or "d" in codes:
        values = tuple(_checked_float(v, c, i) for i, (v, c) in enumerate(zip(values, codes)))
    return values


def _checked_float(value, code: str, index: int):
    if code not in "fd":
        return value
    if not math.isfinite(value):
        raise DecodeError(f"value {index + 1} is {value} (datacode {code})")
    return float(f"{value:.7g}") if code == "f" else value


def pack(values: Sequence[Number], datacode: str = TX_DEFAULT,
         datacodes: Optional[Sequence[str]] = None) -> bytes:
    """Payload bytes from values, the inverse of ``unpack``; raises EncodeError naming the value.

    Values packed with an integer code are rounded to the nearest integer first.
    """
    if datacode == AS_SENT:
        datacode = "B"
    codes = tuple(datacodes) if datacodes else (datacode,) * len(values)
    if len(codes) != len(values):
        raise EncodeError(f"datacodes are for {len(codes)} values, got {len(values)}")
    out = bytearray()
    for index, (value, code) in enumerate(zip(values, codes)):
        try:
            out += struct.pack("<" + code, value if code in "fd" else round(value))
        except (struct.error, OverflowError, ValueError, TypeError):
            low, high = _int_range(code)
            raise EncodeError(f"value {index + 1} ({value}) does not fit datacode {code} "
                              f"({low}..{high})") from None
    return bytes(out)


def _int_range(code: str) -> Tuple[Number, Number]:
    if code in "fd":
        return -math.inf, math.inf
    bits = 8 * SIZES[code]
    return (0, 2 ** bits - 1) if code.isupper() else (-2 ** (bits - 1), 2 ** (bits - 1) - 1)


def scaled(value: Number, scale: float) -> Number:
    """``value * scale`` without float noise: 24012 x 0.01 is 240.12, 2.415 x 10 is 24.15 (not
    24.150000000000002), and whole results stay ints. The product of two decimals has at most
    as many decimal places as both together, so it is rounded to that many."""
    if scale == 1:
        return value
    result = value * scale
    places = _decimal_places(scale) + (0 if isinstance(value, int) else _decimal_places(value))
    if math.isfinite(result):
        result = round(result, places)
        if float(result).is_integer() and abs(result) < 2 ** 53:
            return int(result)
    return result


def _decimal_places(number: float) -> int:
    """Decimal places of a number as written (its shortest repr): 0.01 -> 2, 24.15 -> 2,
    10.0 -> -1 (a multiple of ten), 1e-05 -> 5."""
    import decimal   # (only for nodes with scales: a module the others need not load)
    exponent = decimal.Decimal(repr(number)).normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) else 0


# -- the [nodes] model ----------------------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    """One direction of a node's data: struct codes, scales, names, units."""

    names: Tuple[str, ...] = ()
    datacode: Optional[str] = None
    datacodes: Optional[Tuple[str, ...]] = None
    scale: float = 1.0
    scales: Tuple[float, ...] = ()
    units: Tuple[str, ...] = ()

    @property
    def decodes_bytes(self) -> bool:
        """True if the layout unpacks bytes (a datacode other than 0, or datacodes)."""
        return bool(self.datacodes) or self.datacode not in (None, AS_SENT)

    def apply_scales(self, values: Sequence[Number]) -> Tuple[Number, ...]:
        if not self.scales and self.scale == 1:
            return values if values.__class__ is tuple else tuple(values)
        return tuple(scaled(v, self.scale_for(i)) for i, v in enumerate(values))

    def scale_for(self, index: int) -> float:
        """A value's scale: from ``scales`` (1 past its end), else the one ``scale``."""
        if self.scales:
            return self.scales[index] if index < len(self.scales) else 1.0
        return self.scale

    def describe(self) -> dict:
        return {k: v for k, v in (("names", list(self.names)), ("datacode", self.datacode),
                                  ("datacodes", list(self.datacodes or ())), ("scale", self.scale),
                                  ("scales", list(self.scales)), ("units", list(self.units)))
                if v not in (None, [], 1.0)}


@dataclass(frozen=True)
class NodeSpec:
    """What ``[nodes] [[id]]`` says about one node."""

    node: Node
    nodename: Optional[Node] = None
    rx: Layout = Layout()
    tx: Layout = Layout()
    whitening: bool = False


def _layout(values: Mapping) -> Layout:
    return Layout(names=tuple(values.get("names") or ()), datacode=values.get("datacode"),
                  datacodes=tuple(values["datacodes"]) if values.get("datacodes") else None,
                  scale=values.get("scale") if values.get("scale") is not None else 1.0,
                  scales=tuple(values.get("scales") or ()), units=tuple(values.get("units") or ()))


class NodeTable:
    """The ``[nodes]`` section: node id or name -> NodeSpec. Immutable; a new config makes a new one."""

    def __init__(self, specs: Sequence[NodeSpec] = ()):
        self._specs: Dict[Node, NodeSpec] = {spec.node: spec for spec in specs}

    def get(self, node: Node) -> Optional[NodeSpec]:
        return self._specs.get(node)

    def __contains__(self, node) -> bool:
        return node in self._specs

    def __len__(self) -> int:
        return len(self._specs)

    def node_id(self, node: Node) -> Node:
        """The id of the node whose ``nodename`` is ``node`` (decoded frames carry the name),
        else ``node`` itself."""
        for spec in self._specs.values():
            if spec.nodename is not None and spec.nodename == node and spec.node != node:
                return spec.node
        return node

    def describe(self) -> dict:
        """The table as plain data, for ``--show-settings``."""
        out = {}
        for node, spec in self._specs.items():
            entry = {"nodename": spec.nodename} if spec.nodename is not None else {}
            entry.update(spec.rx.describe())
            if spec.whitening:
                entry["whitening"] = True
            if spec.tx.describe():
                entry["tx"] = spec.tx.describe()
            out[str(node)] = entry
        return out

    @classmethod
    def from_config(cls, section: Mapping) -> Tuple["NodeTable", List[str], List[str]]:
        """A table from the validated ``[nodes]`` section: ``(table, problems, warnings)``.

        Messages start with the section they are about, ``[nodes] [[10]]: ...``.
        """
        specs, problems, warnings = [], [], []
        seen: Dict[Node, str] = {}
        for key, values in section.items():
            if not isinstance(values, Mapping):
                continue
            where = f"[nodes] [[{key}]]"
            try:
                node = parse_node(key.strip())
            except FrameError as exc:
                problems.append(f"{where}: a node section is named by the node id or name ({exc})")
                continue
            if node in seen:
                problems.append(f"{where}: node {node} is described twice (also in [[{seen[node]}]])")
                continue
            seen[node] = key
            spec = NodeSpec(node, values.get("nodename"), _layout(values),
                            _layout(values.get("tx") or {}), bool(values.get("whitening")))
            warnings += [f"{where}: {w}" for w in _layout_warnings(spec.rx)]
            warnings += [f"{where} [[[tx]]]: {w}" for w in _layout_warnings(spec.tx)]
            specs.append(spec)
        return cls(specs), problems, warnings


def _layout_warnings(layout: Layout) -> List[str]:
    warnings = []
    if layout.datacodes and layout.datacode is not None:
        warnings.append("both datacode and datacodes are set: datacodes is used")
    if layout.datacodes:
        count = len(layout.datacodes)
        for key, items in (("names", layout.names), ("scales", layout.scales), ("units", layout.units)):
            if len(items) > count:
                warnings.append(f"{len(items)} {key} for {count} datacodes: the last "
                                f"{len(items) - count} are unused")
    return warnings


# -- configspec checks (registered with the config loader) -----------------------------------
def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _check_datacode(value, *args, **kwargs):
    if not isinstance(value, str) or value.strip() not in set(SIZES) | {AS_SENT}:
        raise VdtValueError(value)
    return value.strip()


def _check_datacodes(value, *args, **kwargs):
    codes = [str(c).strip() for c in _as_list(value) if str(c).strip()]
    if not codes or any(c not in SIZES for c in codes):
        raise VdtValueError(value)
    return codes


def _check_names(value, *args, **kwargs):
    names = [str(n).strip() for n in _as_list(value) if str(n).strip()]
    # Spaces inside a name are allowed, as emonhub's own templates have them ("external
    # temperature" of the emonTH) and emoncms and MQTT topics take them.
    if any(input_name_problem(n.replace(" ", "_")) for n in names) or len(set(names)) != len(names):
        raise VdtValueError(value)
    return names


def _check_numbers(value, *args, **kwargs):
    try:
        numbers = [float(v) for v in _as_list(value) if str(v).strip()]
    except (TypeError, ValueError):
        raise VdtValueError(value) from None
    if not all(math.isfinite(n) for n in numbers):
        raise VdtValueError(value)
    return numbers


def _check_nodename(value, *args, **kwargs):
    try:
        return parse_node(str(value).strip())
    except FrameError:
        raise VdtValueError(value) from None


_CODES_TEXT = "b B h H i I l L q Q f d (little-endian struct codes)"
CHECKS: Dict[str, Tuple[Callable, str]] = {
    "datacode": (_check_datacode, f"one of {_CODES_TEXT}, or 0 for numbers as sent"),
    "datacodes": (_check_datacodes, f"a list of {_CODES_TEXT}"),
    "names": (_check_names, f"a list of different names of letters, digits, spaces, _ . and -, at most "
                            f"{NAME_MAX} characters each"),
    "numbers": (_check_numbers, "a list of numbers"),
    "nodename": (_check_nodename, f"a node name of letters, digits, _ and -, at most {NAME_MAX} "
                                  "characters (or a number 0-255)"),
}

LAYOUT_SPEC = """
names = names(default=None)
datacode = datacode(default=None)
datacodes = datacodes(default=None)
scale = float(default=None)
scales = numbers(default=None)
units = force_list(default=None)
"""

NODE_SPEC = "nodename = nodename(default=None)\nwhitening = boolean(default=False)\n" + \
    LAYOUT_SPEC + "[[[tx]]]\n" + LAYOUT_SPEC
"""The configspec of one ``[nodes] [[id]]`` section (its ``[[[rx]]]`` keys are read as its own)."""

NODE_SAMPLE = """\
# How to decode each node's data (emonhub's [nodes] section works as it is). A node's
# section is named by its id (or, for named nodes, its name); as emonhub writes them, its
# keys may also sit in an [[[rx]]] sub-section. Nodes not listed: radio payloads are read
# as signed 16-bit values, text values are kept as sent, inputs are named 1, 2, 3 ...
[nodes]
    # [[10]]
    #     # The node's name in emoncms (instead of 10).
    #     nodename = emontx
    #     # Input names, in order.
    #     names = power1, power2, power3, power4, vrms, temp1, pulse
    #     # One little-endian struct code per value: b B (1 byte), h H (2), i I l L (4),
    #     # q Q (8), f (float), d (double); lower case signed. Or one 'datacode' for all values
    #     # (0: the values are numbers already).
    #     datacodes = h, h, h, h, h, h, L
    #     # Multipliers, one per value (or one 'scale' for all); missing ones are 1.
    #     scales = 1, 1, 1, 1, 0.01, 0.1, 1
    #     # Units, for your notes.
    #     units = W, W, W, W, V, C, p
    #     # True for firmware that XORs its bytes with 0x55.
    #     # whitening = False
    #     # How values sent to this node (repeater port) are packed; default: datacode h.
    #     [[[tx]]]
    #         datacodes = b, b, h
"""
"""``[nodes]`` in the shipped config: an example node, every key explained."""


# -- decoding -------------------------------------------------------------------------------
@dataclass
class NodeStats:
    """What the gateway knows of one node, for the status."""

    frames: int = 0          # decoded and passed on
    dropped: int = 0         # could not be decoded
    duplicates: int = 0      # repeated message counter: a retransmission, dropped
    missed: int = 0          # gaps in the message counter: packets that never arrived
    last_msg: Optional[int] = None
    rssi: Optional[int] = None
    last_seen: Optional[float] = None
    last_frame: Optional[Frame] = None   # the status shows its values by input name


@dataclass
class _NodeState:
    stats: NodeStats
    problems: LogThrottle
    in_trouble: bool = False
    warned: set = field(default_factory=set)
    first_msg: Optional[int] = None   # emonhub's count of missed packets (``emonhub_values``)
    last_msg: Optional[int] = None
    missed: int = 0


class NodeDecoder:
    """Turns RawFrames and Frames into decoded, named Frames, per the current NodeTable.

    Runs on the loop thread. Keeps per-node counters (``snapshot()``) and logs a node's
    decoding problem once per burst: the first bad frame is logged, the rest of the burst is
    summarised, and the next good frame from the node re-arms the log.
    """

    MAX_TRACKED = 1024   # nodes with counters; beyond, the least recently seen is forgotten

    def __init__(self, table: Optional[NodeTable] = None,
                 schedule: Optional[Callable[[float, Callable[[], None]], object]] = None):
        self.table = table or NodeTable()
        self.units = UnitBook()   # units listeners declare (device presets), for the buffers
        self._schedule = schedule
        self._nodes: "OrderedDict[Node, _NodeState]" = OrderedDict()
        self.templates = None        # a TemplateMatcher when [gateway] node_templates is on
        self.emonhub_values = False   # [gateway] emonhub_values
        # Told of each decoded frame, with its node id as text (the web page's history).
        self.on_decoded: Optional[Callable[[str, Frame], None]] = None

    def configure(self, table: NodeTable, node_templates: bool = False, emonhub_values: bool = False) -> None:
        """Use a new ``[nodes]`` table from now on; counters are kept. ``node_templates``: radio
        nodes without a ``[nodes]`` section are decoded with the built-in templates of OEM's
        hardware (``gateway.node_templates``), as emonhub's ``autoconf`` does.
        ``emonhub_values``: values as emonhub makes them, so its users' inputs and topics stay
        the same: whole numbers from text sources are integers (``T1:300.00`` gives 300), and a
        node whose first input is ``MSG`` gets two more, ``missed`` and ``missedprc``."""
        self.table = table
        for state in self._nodes.values():
            state.warned.clear()
        if not node_templates:
            self.templates = None
        elif self.templates is None:
            from gateway.node_templates import TemplateMatcher   # (it imports this module)
            self.templates = TemplateMatcher(announce=lambda found: log.info("%s", found.describe()))
        else:
            self.templates.forget()   # [nodes] may now describe a node matched before
        self.emonhub_values = emonhub_values

    def is_listed(self, node: Node) -> bool:
        return node in self.table

    def node_id(self, node: Node) -> Node:
        """The id of a node by its name (``[nodes]`` nodename, or a template's ``emonTx4_17``),
        else ``node`` itself."""
        found = self.table.node_id(node)
        if found == node and self.templates is not None and isinstance(node, str):
            for node_id, match in self.templates.matches().items():
                if match.template.nodename(node_id) == node:
                    return node_id
        return found

    # -- receiving ----------------------------------------------------------------------
    def decode(self, item: Union[Frame, RawFrame]) -> Optional[Frame]:
        """The Frame to deliver for ``item``, or None if it is dropped (logged and counted)."""
        spec = self.table.get(item.node)
        if spec is None and self.templates is not None and isinstance(item, RawFrame):
            spec = self.templates.spec_for(item.node, len(item.payload))
        state = self._state(item.node)
        try:
            values = self._values(item, spec)
        except DecodeError as exc:
            state.stats.dropped += 1
            state.in_trouble = True
            state.problems("node %s: %s (frame dropped)", item.node, exc)
            return None
        if state.in_trouble:
            state.in_trouble = False
            state.problems.reset()
        names = self._names(item, spec, len(values), state)
        if names is not None and self._is_repeat(state, item.node, names, values):
            return None
        stats = state.stats
        stats.frames += 1
        stats.last_seen = item.time
        stats.rssi = item.rssi if item.rssi is not None else stats.rssi
        node = spec.nodename if spec is not None and spec.nodename is not None else item.node
        if self.emonhub_values and names and names[0].lower() == MSG_NAME and isinstance(values[0], int):
            values, names = self._with_missed(state, values, names)
        if (item.__class__ is Frame and node == item.node and names is item.names
                and values is item.values):
            frame = item   # nothing to change: no second Frame for each reading
        else:
            frame = Frame(node, values, item.time, names, item.rssi, item.source)
        stats.last_frame = frame   # (its values by name are worked out only when the status asks)
        if self.on_decoded is not None:
            self.on_decoded(str(item.node), frame)
        return frame

    def _values(self, item, spec: Optional[NodeSpec]) -> Tuple[Number, ...]:
        rx = spec.rx if spec is not None else Layout()
        if isinstance(item, RawFrame):
            payload = item.payload
        elif rx.decodes_bytes and item.names is None:
            payload = _bytes_of(item.values)
        elif self.emonhub_values:
            return rx.apply_scales(tuple(int(v) if isinstance(v, float) and v.is_integer() else v
                                         for v in item.values))
        else:
            return rx.apply_scales(item.values)
        if spec is not None and spec.whitening:
            payload = bytes(b ^ 0x55 for b in payload)
        if not payload:
            raise DecodeError("the packet holds no data")
        try:
            values = unpack(payload, rx.datacode or RADIO_DEFAULT, rx.datacodes)
        except DecodeError as exc:
            if spec is None:
                raise DecodeError(f"{exc}: nodes without a [nodes] section are read as signed "
                                  f"16-bit values; add [nodes] [[{item.node}]] with its datacodes") from None
            raise
        return rx.apply_scales(values)

    def _names(self, item, spec: Optional[NodeSpec], count: int, state: _NodeState):
        """The frame's own names, else the node's configured ones (positions past them: 4, 5 ...)."""
        if item.__class__ is Frame and item.names is not None:
            return item.names
        names = spec.rx.names if spec is not None else ()
        if not names:
            return None
        if len(names) != count and "names" not in state.warned:
            state.warned.add("names")
            log.warning("node %s: [nodes] has %s for %s%s", item.node, plural(len(names), "name"),
                        plural(count, "value"),
                        " (the last ones are unused)" if len(names) > count
                        else f" (the others are sent as {len(names) + 1}, ...)")
        return tuple(names[:count]) + tuple(str(i) for i in range(len(names) + 1, count + 1))

    @staticmethod
    def _is_repeat(state: _NodeState, node: Node, names, values) -> bool:
        """Track the node's message counter: count the gaps, and say whether this is a repeat."""
        index = next((i for i, n in enumerate(names) if n.lower() == MSG_NAME), None)
        if index is None or not isinstance(values[index], int):
            return False
        msg, stats = values[index], state.stats
        if stats.last_msg is not None:
            if msg == stats.last_msg:
                stats.duplicates += 1
                log.debug("node %s: message %d received again: dropped", node, msg)
                return True
            if msg > stats.last_msg:
                stats.missed += msg - stats.last_msg - 1
        stats.last_msg = msg
        return False

    @staticmethod
    def _with_missed(state: _NodeState, values, names):
        """``values`` and ``names`` with emonhub's ``missed`` (packets missed since the first
        message seen, or since the counter went back) and ``missedprc`` (their percentage of
        the messages since: 0 for the first, a float after), computed as emonhub does."""
        msg = values[0]
        if state.last_msg is None or msg < state.last_msg:
            state.first_msg, state.last_msg, state.missed = msg, msg - 1, 0
        state.missed += msg - state.last_msg - 1
        state.last_msg = msg
        count = msg - state.first_msg
        percent = 100.0 * state.missed / count if count else 0
        return tuple(values) + (state.missed, percent), tuple(names) + ("missed", "missedprc")

    def _state(self, node: Node) -> _NodeState:
        state = self._nodes.get(node)
        if state is None:
            state = _NodeState(NodeStats(), LogThrottle(log, logging.WARNING, 60.0, self._schedule))
            self._nodes[node] = state
            if len(self._nodes) > self.MAX_TRACKED:
                self._nodes.popitem(last=False)[1].problems.flush()
        else:
            self._nodes.move_to_end(node)
        return state

    def snapshot(self) -> Dict[str, dict]:
        """Per-node counters as plain data (for the status)."""
        snapshot = {}
        for node, state in self._nodes.items():
            stats = dict(vars(state.stats))
            frame = stats.pop("last_frame")
            stats["values"] = frame.named_values() if frame is not None else None
            snapshot[str(node)] = stats
        return snapshot

    # -- sending ------------------------------------------------------------------------
    def encode(self, node: Node, values: Sequence[Number]) -> bytes:
        """Payload bytes for values sent to ``node``: its ``[[[tx]]]`` scales and datacodes
        (16-bit values without them). Raises EncodeError."""
        spec = self.table.get(node)
        tx = spec.tx if spec is not None else Layout()
        divided = [v / tx.scale_for(i) if tx.scale_for(i) != 1 else v for i, v in enumerate(values)]
        payload = pack(divided, tx.datacode or TX_DEFAULT, tx.datacodes)
        if spec is not None and spec.whitening:
            payload = bytes(b ^ 0x55 for b in payload)
        return payload


def _bytes_of(values: Sequence[Number]) -> bytes:
    """A text frame's values as the bytes a radio sent, for a node whose [nodes] has datacodes."""
    for value in values:
        if not isinstance(value, int) or not 0 <= value <= 255:
            raise DecodeError(f"[nodes] datacodes unpack bytes 0-255, as a radio board sends them, "
                              f"but this frame holds {value}: for a source that sends numbers, "
                              f"set datacode = 0 (or remove datacode/datacodes)")
    return bytes(values)
