"""Editing ``oemgateway.conf`` from the web page: secrets masked, every change validated with
the same ConfigLoader as ``--check`` before it is written, writes atomic with a backup.

The file's text is kept as the user wrote it (comments, layout): secrets are masked and
restored line by line; only the forms' section edits go through configobj's writer.
"""

import os
import re
import shutil
import tempfile
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from configobj import ConfigObj, ConfigObjError, Section

from gateway.config import LEGACY_SUBSECTIONS, PLUGIN_KINDS, ConfigError, ConfigLoader

MASK = "********"
GATEWAY_SECRETS = ("web_password_hash",)
MAX_CONFIG_BYTES = 256 * 1024   # a big config is ~20 KiB; JSON may double it within LARGE_BODY

_SECTION_LINE = re.compile(r"^\s*(\[+)\s*(.*?)\s*\]+\s*(?:#.*)?$")
_KEY_LINE = re.compile(r"^\s*([^\s=#\[][^=]*?)\s*=\s*(.*?)\s*$")
_PROBLEM_LINE = re.compile(r"^:(\d+): ")
_PROBLEM_PLACE = re.compile(r"^((?:\[+[^\]]+\]+ ?)+?)(?: ?(?::\s*key '([^']+)'|:\s*'([^']+)'|([^\s:=]+) = ))")
_SECTION_NAME = re.compile(r"\[+([^\]]+)\]+")

KeyPath = Tuple[Tuple[str, ...], str]


class ConfigEditError(Exception):
    """A change that cannot be made; ``problems`` are dicts with message, line, section, key."""

    def __init__(self, problems: List[dict]):
        self.problems = problems
        super().__init__("\n".join(p["message"] for p in problems))


def _walk(text: str) -> Iterator[Tuple[int, Tuple[str, ...], Optional["re.Match"]]]:
    """Each section header ``(index, path, None)`` and ``key = value`` line ``(index, path, match)``."""
    path: List[str] = []
    for index, line in enumerate(text.splitlines()):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        section = _SECTION_LINE.match(line)
        if section:
            path = path[:len(section.group(1)) - 1] + [section.group(2).strip("'\"")]
            yield index, tuple(path), None
            continue
        key = _KEY_LINE.match(line)
        if key:
            yield index, tuple(path), key


def scan_keys(text: str) -> Iterator[Tuple[int, Tuple[str, ...], str, int, int]]:
    """Every ``key = value`` line: ``(line index, section path, key, value start, value end)``."""
    for index, path, key in _walk(text):
        if key is not None:
            yield index, path, key.group(1).strip("'\""), key.start(2), key.end(2)


def _parse(text: str) -> ConfigObj:
    try:
        return ConfigObj(text.splitlines(), interpolation=False)
    except ConfigObjError as exc:
        errors = getattr(exc, "errors", None) or [exc]
        raise ConfigEditError([{"message": str(e), "line": getattr(e, "line_number", None),
                                "section": [], "key": None} for e in errors]) from None


class ConfigEditor:
    """Reads, checks and saves one config file for the web page."""

    def __init__(self, path: str, loader: ConfigLoader):
        self.path = os.path.abspath(path)
        self.loader = loader

    # -- secrets ------------------------------------------------------------------------
    def secret_keys(self, parsed: ConfigObj) -> List[KeyPath]:
        """Where the secrets are: ``[gateway] web_password_hash`` and each plugin's SECRETS."""
        found = [(("gateway",), key) for key in GATEWAY_SECRETS
                 if isinstance(parsed.get("gateway"), Section) and key in parsed["gateway"]]
        for kind in PLUGIN_KINDS:
            group = parsed.get(kind)
            if not isinstance(group, Section):
                continue
            for name in group.sections:
                try:
                    cls = self.loader.registries[kind].resolve(str(group[name].get("type")))
                except LookupError:
                    continue
                for sub in ((),) + tuple((s,) for s in LEGACY_SUBSECTIONS if s in group[name].sections):
                    holder = group[name][sub[0]] if sub else group[name]
                    found += [((kind, name) + sub, key) for key in getattr(cls, "SECRETS", ()) if key in holder]
        return found

    def _secret_lines(self, text: str) -> Dict[KeyPath, Tuple[int, int, int]]:
        """Where each secret's value is in ``text``: ``(line index, start, end)``. A text that
        does not parse has every key named like some plugin's secret masked."""
        try:
            secrets = set(self.secret_keys(_parse(text)))
        except ConfigEditError:
            names = set(GATEWAY_SECRETS)
            for registry in self.loader.registries.values():
                for type_name in registry.names():
                    names.update(getattr(registry.resolve(type_name), "SECRETS", ()))
            secrets = {(path, key) for _, path, key, _, _ in scan_keys(text) if key in names}
        return {(path, key): (index, start, end) for index, path, key, start, end in scan_keys(text)
                if (path, key) in secrets}

    def read(self) -> str:
        with open(self.path, encoding="utf-8") as f:
            return f.read()

    def masked_text(self) -> str:
        """The file as it is, every secret's value replaced by MASK."""
        text = self.read()
        lines = text.splitlines(keepends=True)
        for index, start, end in self._secret_lines(text).values():
            line = lines[index]
            lines[index] = line[:start] + (MASK if line[start:end] else "") + line[end:]
        return "".join(lines)

    def masked_sections(self) -> dict:
        """The file as nested dicts (for the forms), secrets masked."""
        parsed = _parse(self.read())
        for path, key in self.secret_keys(parsed):
            section = parsed
            for name in path:
                section = section[name]
            section[key] = MASK if section[key] else section[key]
        return parsed.dict()

    def unmask(self, text: str) -> str:
        """``text`` with every secret still reading MASK given back its value from the file."""
        current_text = self.read()
        current = self._secret_lines(current_text)
        current_lines = current_text.splitlines()
        lines = text.splitlines(keepends=True)
        problems = []
        for place, (index, start, end) in self._secret_lines(text).items():
            if lines[index][start:end] != MASK:
                continue
            if place not in current:
                problems.append(self._problem(f"{_label(place)}: '{place[1]}' shows the mask "
                                              f"but there is no saved value: type it", place, index))
                continue
            old_index, old_start, old_end = current[place]
            lines[index] = lines[index][:start] + current_lines[old_index][old_start:old_end] + lines[index][end:]
        if problems:
            raise ConfigEditError(problems)
        return "".join(lines)

    # -- checking and saving ------------------------------------------------------------
    def check(self, text: str) -> dict:
        """Validate a (masked) text as ``--check`` would: ``{"ok", "problems", "warnings"}``."""
        try:
            full = self.unmask(text)
            warnings = self._validate(full)
        except ConfigEditError as exc:
            return {"ok": False, "problems": exc.problems, "warnings": []}
        return {"ok": True, "problems": [], "warnings": [self._locate(w, full) for w in warnings]}

    def save(self, text: str) -> dict:
        """Validate, keep the current file as ``.bak``, write atomically. Raises ConfigEditError."""
        if len(text.encode("utf-8")) > MAX_CONFIG_BYTES:
            raise ConfigEditError([self._problem("the config is too large", None, None)])
        full = self.unmask(text)
        warnings = self._validate(full)
        self._write(full)
        return {"ok": True, "problems": [], "warnings": [self._locate(w, full) for w in warnings]}

    def edit_section(self, path: Sequence[str], values: Optional[dict], remove: bool = False) -> dict:
        """Set keys of a section (created if missing; an empty value removes the key) or
        remove the section, then save as ``save`` does. A secret sent back as MASK is kept."""
        if not path or any(not isinstance(p, str) or not p.strip() for p in path):
            raise ConfigEditError([self._problem("no section given", None, None)])
        parsed = _parse(self.read())
        parent = parsed
        for name in path[:-1]:
            if name not in parent:
                parent[name] = {}
            parent = parent[name]
        if remove:
            parent.pop(path[-1], None)
        else:
            section = parent.setdefault(path[-1], {})
            for key, value in (values or {}).items():
                if value == MASK:
                    continue
                if value in ("", None):
                    section.pop(key, None)
                else:
                    section[key] = _form_value(value)
        return self.save("\n".join(parsed.write()) + "\n")

    def _validate(self, text: str) -> List[str]:
        """Load ``text`` with the loader from a file beside the config (so relative paths mean
        the same); raises ConfigEditError with each problem placed at its line."""
        folder = os.path.dirname(self.path)
        fd, temp = tempfile.mkstemp(prefix=".oemgateway-check-", suffix=".conf", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            try:
                config = self.loader.load(temp)
            except ConfigError as exc:
                raise ConfigEditError([self._locate(p.replace(temp, self.path), text)
                                       for p in exc.problems]) from None
            return [w.replace(temp, self.path) for w in config.warnings]
        finally:
            os.unlink(temp)

    def _write(self, text: str) -> None:
        """Copy the file to ``.bak``, then replace it with ``text`` in one rename (same mode)."""
        folder = os.path.dirname(self.path)
        mode = os.stat(self.path).st_mode & 0o7777
        shutil.copy2(self.path, self.path + ".bak")
        fd, temp = tempfile.mkstemp(prefix=".oemgateway-save-", suffix=".conf", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(temp, mode)
            os.replace(temp, self.path)
        except BaseException:
            if os.path.exists(temp):
                os.unlink(temp)
            raise
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    # -- placing messages ---------------------------------------------------------------
    def _problem(self, message: str, place: Optional[KeyPath], line: Optional[int]) -> dict:
        return {"message": message, "line": None if line is None else line + 1,
                "section": list(place[0]) if place else [], "key": place[1] if place else None}

    def _locate(self, message: str, text: str) -> dict:
        """A loader message as ``{"message", "line", "section", "key"}``: the line is that of
        the key it names (else of its section), 1-based."""
        rest = message[len(self.path):] if message.startswith(self.path) else message
        numbered = _PROBLEM_LINE.match(rest)
        if numbered:
            return {"message": message, "line": int(numbered.group(1)), "section": [], "key": None}
        place = _PROBLEM_PLACE.match(rest.lstrip(": "))
        if not place:
            return {"message": message, "line": None, "section": [], "key": None}
        section = tuple(_SECTION_NAME.findall(place.group(1)))
        key = place.group(2) or place.group(3) or place.group(4)
        line = next((i for i, p, k, _, _ in scan_keys(text) if p == section and k == key), None)
        if line is None:
            line = _section_line(text, section)
        return {"message": message, "line": None if line is None else line + 1,
                "section": list(section), "key": key}


def _section_line(text: str, section: Tuple[str, ...]) -> Optional[int]:
    return next((index for index, path, key in _walk(text) if key is None and path == section), None)


def _label(place: KeyPath) -> str:
    return " ".join("[" * d + n + "]" * d for d, n in enumerate(place[0], 1))


def _form_value(value):
    """A form's text as configobj should write it: ``a, b`` becomes a list."""
    if isinstance(value, list):
        return [str(v) for v in value]
    text = str(value)
    return [v.strip() for v in text.split(",") if v.strip()] if "," in text else text
