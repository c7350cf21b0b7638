"""Edits of one section of the config *text*, touching only the lines they must.

A form that changes five settings changes five lines: every other line (comments, order, blank
lines, the user's indentation and quoting) stays byte for byte. A setting that is only shown
commented out (``# timeout = 10``, as the shipped file does) is set on that line. A new section
goes at the end of its parent; a removed one takes its header, its keys and subsections, and
the comment lines just above its header with it.
"""

import re
from typing import Dict, List, Optional, Sequence, Tuple

from gateway import configtext

Path = Tuple[str, ...]
_NEEDS_QUOTES = re.compile(r"""#|^\s|\s$|^['"]|^$""")


def format_value(value) -> str:
    """A form's value as config text: a list as ``a, b``; quoted where configobj would
    otherwise misread it (a ``#``, leading or trailing blanks, a leading quote)."""
    if isinstance(value, (list, tuple)):
        return ", ".join(_quoted(str(v), in_list=True) for v in value)
    return _quoted(str(value), in_list=False)


def _quoted(text: str, in_list: bool) -> str:
    if not (_NEEDS_QUOTES.search(text) or (in_list and "," in text)):
        return text
    quote = "'" if '"' in text else '"'
    return f"{quote}{text}{quote}"


def _unquoted(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"" and "," not in text:
        return text[1:-1]
    return text


class SectionText:
    """Where one section is in a config text: its header, its own keys, its whole extent."""

    def __init__(self, text: str, path: Sequence[str]):
        self.text = text
        self.path: Path = tuple(path)
        self.lines = text.splitlines(keepends=True)
        self.header: Optional[int] = None
        self.entries: List[configtext.Entry] = []
        self.own_end = len(self.lines)    # the line after the section's own keys
        self.end = len(self.lines)        # the line after its subsections
        for line, path_here, entry in configtext.scan(text):
            if entry is not None:
                if path_here == self.path and self.header is not None or (not self.path and not path_here):
                    self.entries.append(entry)
                continue
            if self.header is None:
                if path_here == self.path:
                    self.header = line
                continue
            if self.own_end == len(self.lines):
                self.own_end = line
            if len(path_here) <= len(self.path) or path_here[:len(self.path)] != self.path:
                self.end = line
                break

    @property
    def exists(self) -> bool:
        return self.header is not None

    def key_indent(self) -> str:
        if self.entries:
            first = self.lines[self.entries[0].line]
            return first[:len(first) - len(first.lstrip())]
        return "    " * len(self.path)

    def commented_setting(self, key: str) -> Optional[int]:
        """The line of ``# key = ...`` among the section's own lines, or None."""
        pattern = re.compile(r"^(\s*)#\s*" + re.escape(key) + r"\s*=")
        start = (self.header + 1) if self.header is not None else 0
        for index in range(start, self.own_end):
            if pattern.match(self.lines[index]):
                return index
        return None


def set_values(text: str, path: Sequence[str], values: Dict[str, object]) -> str:
    """``text`` with the keys of section ``path`` set to ``values`` (a value of "" or None
    removes its key: the setting goes back to its default). The section and its parents are
    created if missing. Values equal to what the file says are left as written."""
    section = SectionText(text, path)
    if not section.exists and path:
        return _add_section(text, tuple(path), values)
    lines = section.lines
    replace: Dict[int, Optional[str]] = {}   # line -> new text (None: deleted)
    spans: List[Tuple[int, int, str]] = []
    inserts: List[str] = []
    for key, value in values.items():
        entry = next((e for e in section.entries if e.key == key), None)
        if value in ("", None):
            if entry is not None:
                for index in range(entry.line, _last_line(text, entry) + 1):
                    replace[index] = None
            continue
        written = format_value(value)
        if entry is not None:
            current = text[entry.start:entry.end]
            if current == written or _unquoted(current) == _unquoted(written):
                continue
            spaced = entry.start == entry.end and text[entry.start - 1:entry.start] == "="
            spans.append((entry.start, entry.end, (" " if spaced else "") + written))
            continue
        commented = section.commented_setting(key)
        if commented is not None and commented not in replace:
            indent = re.match(r"\s*", lines[commented]).group(0)
            replace[commented] = f"{indent}{key} = {written}{_newline(lines[commented])}"
        else:
            inserts.append(f"{section.key_indent()}{key} = {written}\n")
    for start, end, written in sorted(spans, reverse=True):
        text = text[:start] + written + text[end:]
    lines = text.splitlines(keepends=True)   # the spans kept the line count
    if inserts:
        after = (max(_last_line(text, e) for e in section.entries) + 1 if section.entries
                 else (section.header + 1 if section.header is not None else 0))
        if after > 0 and not lines[after - 1].endswith("\n"):
            lines[after - 1] += "\n"
        lines[after:after] = inserts
        replace = {(i + len(inserts) if i >= after else i): v for i, v in replace.items()}
    for index in sorted(replace, reverse=True):
        if replace[index] is None:
            del lines[index]
        else:
            lines[index] = replace[index]
    return "".join(lines)


def remove_section(text: str, path: Sequence[str]) -> str:
    """``text`` without section ``path`` (its keys, subsections and the comment block just
    above its header); unchanged if there is no such section."""
    section = SectionText(text, path)
    if not section.exists:
        return text
    lines = section.lines
    start = section.header
    while start > 0 and lines[start - 1].strip().startswith("#"):
        start -= 1
    end = section.end
    header_indent = len(lines[section.header]) - len(lines[section.header].lstrip())
    # Comment lines at the end that are indented like the next section belong to it.
    while end > section.header + 1 and (not lines[end - 1].strip() or (
            lines[end - 1].strip().startswith("#")
            and len(lines[end - 1]) - len(lines[end - 1].lstrip()) <= header_indent)):
        end -= 1
    return "".join(lines[:start] + lines[end:])


def _add_section(text: str, path: Path, values: Dict[str, object]) -> str:
    parent = SectionText(text, path[:-1]) if len(path) > 1 else None
    if parent is not None and not parent.exists:
        text = _add_section(text, path[:-1], {})
        parent = SectionText(text, path[:-1])
    depth = len(path)
    indent = "    " * (depth - 1)
    block = [f"{indent}{'[' * depth}{path[-1]}{']' * depth}\n"]
    block += [f"{indent}    {key} = {format_value(value)}\n" for key, value in values.items()
              if value not in ("", None)]
    lines = text.splitlines(keepends=True)
    at = parent.end if parent is not None else len(lines)
    while parent is not None and at > parent.header + 1 and not lines[at - 1].strip():
        at -= 1   # before the blank lines that separate the parent from what follows
    if at > 0 and not lines[at - 1].endswith("\n"):
        lines[at - 1] += "\n"
    return "".join(lines[:at] + block + lines[at:])


def _last_line(text: str, entry: configtext.Entry) -> int:
    """The line a (possibly multi-line) entry ends on."""
    return text.count("\n", 0, max(entry.start, entry.end - 1)) if entry.end > entry.start else entry.line


def _newline(line: str) -> str:
    return "\n" if line.endswith("\n") else ""
