"""The config file as the user wrote it: where each section, key and value is in the text, and
which of those values (or parts of values) are secrets.

The web editor shows and saves the file's own text (comments and layout kept), so it masks
secrets where they stand and puts them back there. That needs more than configobj gives: the
offsets of values that run over several lines (``'''...'''``), of lines that do not parse
(``apikey: 0123...``), and the rule for sections whose ``type`` is misspelled (any plugin's
secret names count there). The rule itself is ``gateway.config``'s, the one the log uses.
"""

import re
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple

from gateway.config import PLUGIN_KINDS, is_gateway_secret, is_secret, secret_names
from gateway.logs import URL_USERINFO
from gateway.registry import Registry

SECTION_LINE = re.compile(r"^\s*(\[+)\s*(.*?)\s*\]+\s*(?:#.*)?$")
_KEY_LINE = re.compile(r"^\s*([^\s=#\[][^=]*?)\s*=\s*(.*?)\s*$")
_LOOSE_LINE = re.compile(r"^\s*([A-Za-z_][\w.-]*)\s*(?::\s*|\s+)(\S.*?)\s*$")   # "apikey: 0123"
_TRIPLE_QUOTES = ('"""', "'''")

Path = Tuple[str, ...]
Place = Tuple[Path, str, str, int]   # section path, key, "value" or "userinfo", occurrence


@dataclass(frozen=True)
class Entry:
    """A ``key = value`` line (or, ``parsed`` False, a line that looks like one but is not)."""

    line: int    # 0-based index of the key's line
    path: Path
    key: str
    start: int   # the value's span in the whole text
    end: int
    parsed: bool = True


@dataclass(frozen=True)
class Secret:
    """A secret's span in the text, and the entry it belongs to."""

    entry: Entry
    start: int
    end: int

    @property
    def whole_value(self) -> bool:
        return (self.start, self.end) == (self.entry.start, self.entry.end)


def scan(text: str) -> Iterator[Tuple[int, Path, Optional[Entry]]]:
    """Each section header as ``(line, path, None)`` and each entry as ``(line, path, Entry)``."""
    lines = text.splitlines(keepends=True)
    bare = text.splitlines()
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    path: List[str] = []
    index = 0
    while index < len(bare):
        line, here = bare[index], offsets[index]
        stripped = line.strip()
        section = SECTION_LINE.match(line) if stripped and not stripped.startswith("#") else None
        key = _KEY_LINE.match(line) if stripped and not stripped.startswith("#") and not section else None
        if section:
            path = path[:len(section.group(1)) - 1] + [section.group(2).strip("'\"")]
            yield index, tuple(path), None
        elif key:
            name, value = key.group(1).strip("'\""), key.group(2)
            start = here + key.start(2)
            quote = value[:3]
            if quote in _TRIPLE_QUOTES and value.find(quote, 3) < 0:   # runs over more lines
                last = next((j for j in range(index + 1, len(bare)) if quote in bare[j]), len(bare) - 1)
                closing = bare[last].find(quote)
                end = offsets[last] + (closing + 3 if closing >= 0 else len(bare[last]))
                yield index, tuple(path), Entry(index, tuple(path), name, start, end)
                index = last + 1
                continue
            yield index, tuple(path), Entry(index, tuple(path), name, start, start + _value_length(value))
        elif stripped and not stripped.startswith("#"):
            loose = _LOOSE_LINE.match(line)
            if loose:
                yield index, tuple(path), Entry(index, tuple(path), loose.group(1),
                                                here + loose.start(2), here + loose.end(2), parsed=False)
        index += 1


def entries(text: str) -> List[Entry]:
    return [entry for _, _, entry in scan(text) if entry is not None]


def section_line(text: str, section: Path) -> Optional[int]:
    return next((line for line, path, entry in scan(text) if entry is None and path == section), None)


def _value_length(value: str) -> int:
    """The length of a one-line value without its trailing ``# comment``."""
    quote = None
    for i, char in enumerate(value):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#":
            return len(value[:i].rstrip())
    return len(value)


def secrets(text: str, registries: Dict[str, Registry]) -> Dict[Place, Secret]:
    """Where the secrets of ``text`` are: the values of secret keys (``[gateway]``'s, each
    plugin's ``SECRETS``, any plugin's where the type is unknown, any key named like one) and
    the user and password of URLs in other values."""
    found = entries(text)
    types = {entry.path: text[entry.start:entry.end].strip("'\"") for entry in found
             if entry.key == "type" and len(entry.path) == 2 and entry.path[0] in PLUGIN_KINDS}
    places: Dict[Place, Secret] = {}
    seen: Dict[Tuple[Path, str, str], int] = {}

    def add(entry, part, start, end):
        n = seen[(entry.path, entry.key, part)] = seen.get((entry.path, entry.key, part), -1) + 1
        places[(entry.path, entry.key, part, n)] = Secret(entry, start, end)

    for entry in found:
        if _is_secret(entry, types, registries):
            add(entry, "value", entry.start, entry.end)
            continue
        for url in URL_USERINFO.finditer(text, entry.start, entry.end):
            add(entry, "userinfo", url.start(2), url.end(2))
    return places


def _is_secret(entry: Entry, types: Dict[Path, str], registries: Dict[str, Registry]) -> bool:
    """The rule of ``gateway.config``: ``[gateway]``'s secrets; a plugin's ``SECRETS`` (any
    plugin's, where its type is unknown); anywhere, a key named like a secret."""
    path = entry.path
    if path == ("gateway",):
        return is_gateway_secret(entry.key)
    if len(path) < 2 or path[0] not in PLUGIN_KINDS or path[0] not in registries:
        return is_secret(entry.key, None)
    try:
        return is_secret(entry.key, registries[path[0]].resolve(types.get(path[:2], "")))
    except LookupError:
        return is_secret(entry.key, None, secret_names(registries))
