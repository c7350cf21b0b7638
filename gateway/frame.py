"""A frame is one reading from one node: the unit that travels from listeners to buffers."""

import math
import re
from dataclasses import dataclass
from typing import Optional, Tuple, Union

Number = Union[int, float]
Node = Union[int, str]

NAME_MAX = 64   # characters in a node name or an input name
_NODE_NAME = re.compile(r"[A-Za-z0-9_-]{1,%d}" % NAME_MAX, re.ASCII)
_INPUT_NAME = re.compile(r"[A-Za-z0-9_.-]{1,%d}" % NAME_MAX, re.ASCII)
_INPUT_CHARS = re.compile(r"[A-Za-z0-9_.-]+", re.ASCII)   # (the node names' are a subset)
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", re.ASCII)
_NUMBER_CHARS = "0123456789+-.eE"
_POSITIONAL_NAMES = tuple(str(i) for i in range(1, 257))
_INT_LIMIT = 2 ** 53  # integers beyond this lose precision as floats downstream


class FrameError(ValueError):
    """A line that is not a valid ``NodeID val1 val2 ...`` frame. The message says why."""


@dataclass(frozen=True)
class Frame:
    """One reading: a node's values and the wall-clock time it was received.

    ``names`` are the input names (``None`` means positional: 1, 2, 3 ...), ``rssi`` the radio
    signal strength when the listener knows it, ``source`` the name of the listener.
    """

    __slots__ = ("node", "values", "time", "names", "rssi", "source")

    node: Node
    values: Tuple[Number, ...]
    time: float
    names: Optional[Tuple[str, ...]]
    rssi: Optional[int]
    source: str

    def named_values(self) -> dict:
        """The values keyed by input name, positional values named "1", "2", ...

        A radio frame's signal strength comes last, as ``rssi``, when the board measured it.
        """
        names = self.names or (_POSITIONAL_NAMES if len(self.values) <= len(_POSITIONAL_NAMES)
                               else [str(i) for i in range(1, len(self.values) + 1)])
        named = dict(zip(names, self.values))
        if self.rssi is not None:
            named["rssi"] = self.rssi
        return named


@dataclass(frozen=True)
class RawFrame:
    """A radio packet as the board delivered it: payload bytes not yet decoded into values.

    Listeners of radio boards emit these; the node decoder (``gateway.nodes``) turns them
    into Frames with the node's struct codes, scales and names, so buffers only see Frames.
    """

    __slots__ = ("node", "payload", "time", "rssi", "source")

    node: int
    payload: bytes
    time: float
    rssi: Optional[int]
    source: str


def parse_node(text: str) -> Node:
    """A node id: an integer 0-255, or a name of letters, digits, ``_`` and ``-``."""
    if text.isdigit() and text.isascii():
        node = int(text)
        if node > 255:
            raise FrameError(f"node id {text} is out of range 0-255")
        return node
    if _NUMBER.fullmatch(text):
        raise FrameError(f"node id {text[:40]} is out of range 0-255")
    if not _NODE_NAME.fullmatch(text):
        if len(text) > NAME_MAX and _INPUT_CHARS.fullmatch(text) and "." not in text:
            raise FrameError(f"node name '{text[:24]}...' is {len(text)} characters long: at most {NAME_MAX}")
        raise FrameError(f"node '{text[:40]}' is neither a number 0-255 nor a name of A-Z a-z 0-9 _ - "
                         f"(at most {NAME_MAX} characters)")
    return text


def input_name_problem(name: str) -> Optional[str]:
    """Why ``name`` cannot be an input's name (letters, digits, ``_ . -``, at most NAME_MAX), or None."""
    if _INPUT_NAME.fullmatch(name):
        return None
    if len(name) > NAME_MAX and _INPUT_CHARS.fullmatch(name):
        return f"input name '{name[:24]}...' is {len(name)} characters long: at most {NAME_MAX}"
    return (f"input name '{name[:40]}' is not letters, digits, _ . and - (at most {NAME_MAX} "
            "characters)")


def parse_number(text: str) -> Number:
    """An integer or decimal number; NaN, infinities and anything else raise FrameError."""
    if text.isdigit() and text.isascii() and len(text) < 16:   # the common case, fast
        return int(text)
    # float() reads exactly the numbers we accept once the text holds only these characters
    # (it would also take "nan", "inf", "1_000" and non-ASCII digits, which we refuse).
    if not text.isascii() or text.strip(_NUMBER_CHARS):
        raise FrameError(f"value {text[:40]!r} is not a number")
    try:
        value = float(text)
    except ValueError:
        raise FrameError(f"value {text[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise FrameError(f"value {text[:40]!r} is out of range")
    if text.lstrip("+-").isdigit() and abs(value) <= _INT_LIMIT:
        return int(text)
    return value


def parse_values_line(line: str):
    """Split ``NodeID val1 val2 ...`` into ``(node, values)``.

    Fields are separated by spaces or tabs. Raises FrameError (and nothing else) when the
    line is not such a frame.
    """
    fields = line.split()
    if len(fields) < 2:
        raise FrameError("a frame needs a node id and at least one value")
    return parse_node(fields[0]), tuple(parse_number(field) for field in fields[1:])
