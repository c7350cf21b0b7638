"""Editing ``oemgateway.conf`` from the web page: secrets masked, every change validated with
the same ConfigLoader as ``--check`` before it is written, writes atomic with a backup.

The file's text is kept as the user wrote it (comments, layout): secrets are masked and
restored line by line; only the forms' section edits go through configobj's writer.
"""

import os
import re
import shutil
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

from configobj import ConfigObj, ConfigObjError, Section

from gateway import configtext
from gateway.config import ConfigError, ConfigLoader, GatewayConfig, parse_problem, section_label
from gateway.fileroots import FileRoots
from gateway.logs import Redactor, mask_url_credentials

MASK = "********"
# Where a buffer sends (and with it, its secrets): changed on the page, its secrets are typed again.
DESTINATION_KEYS = frozenset({"url", "host", "port", "domain", "protocol"})
MAX_CONFIG_BYTES = 256 * 1024   # a big config is ~20 KiB; JSON may double it within LARGE_BODY

_PROBLEM_LINE = re.compile(r"^:(\d+): ")
_PROBLEM_PLACE = re.compile(r"^((?:\[+[^\]]+\]+ ?)+?)(?: ?(?::\s*key '([^']+)'|:\s*'([^']+)'|([^\s:=]+) = ))")
_SECTION_NAME = re.compile(r"\[+([^\]]+)\]+")


class ConfigEditError(Exception):
    """A change that cannot be made; ``problems`` are dicts with message, line, section, key."""

    def __init__(self, problems: List[dict]):
        self.problems = problems
        super().__init__("\n".join(p["message"] for p in problems))


def _parse(text: str) -> ConfigObj:
    try:
        return ConfigObj(text.splitlines(), interpolation=False)
    except ConfigObjError as exc:
        errors = getattr(exc, "errors", None) or [exc]
        raise ConfigEditError([{"message": parse_problem(e), "line": getattr(e, "line_number", None),
                                "section": [], "key": None} for e in errors]) from None


class ConfigEditor:
    """Reads, checks and saves one config file for the web page."""

    def __init__(self, path: str, loader: ConfigLoader, data_folder: Optional[str] = None,
                 protected: Sequence[str] = ()):
        self.path = os.path.abspath(path)
        self.loader = loader
        self.file_roots = FileRoots(self.path, data_folder, protected)

    # -- secrets ------------------------------------------------------------------------
    def secrets(self, text: str) -> Dict[configtext.Place, configtext.Secret]:
        """Where the secrets of ``text`` are (``gateway.configtext``: values of secret keys,
        URL credentials, in any line, parsed or not)."""
        return configtext.secrets(text, self.loader.registries)

    def read(self) -> str:
        with open(self.path, encoding="utf-8") as f:
            return f.read()

    def masked_text(self) -> str:
        """The file as it is, every secret replaced by MASK."""
        text = self.read()
        for secret in sorted(self.secrets(text).values(), key=lambda s: s.start, reverse=True):
            if secret.end > secret.start:
                text = text[:secret.start] + MASK + text[secret.end:]
        return text

    def masked_sections(self) -> dict:
        """The file as nested dicts (for the forms), secrets masked as in ``masked_text``."""
        return _masked_dict(_parse(self.masked_text()))

    def unmask(self, text: str) -> str:
        """``text`` with every secret still reading MASK given back its value from the file.

        A secret is never sent to an address typed on the page unless typed with it: a URL's
        masked user and password come back only if the rest of the URL is unchanged, and a
        buffer's masked key only if its ``url``/``host``/``port``... are unchanged.
        """
        current_text = self.read()
        current = self.secrets(current_text)
        moved = _moved_destinations(text, current_text)
        problems, edits = [], []
        for place, secret in self.secrets(text).items():
            if text[secret.start:secret.end] != MASK:
                continue
            old = current.get(place)
            path, key, part, _ = place
            where = f"{section_label(path)}: '{key}'" if path else f"'{key}'"
            if old is None:
                problems.append(self._problem(f"{where} shows the mask but there is no saved value: "
                                              f"type it", (path, key), secret.entry.line))
            elif part == "userinfo" and _with_mask(current_text, old) != text[secret.entry.start:secret.entry.end]:
                problems.append(self._problem(f"{where}: the URL changed: type its user and password "
                                              f"again", (path, key), secret.entry.line))
            elif path[:2] in moved:
                problems.append(self._problem(f"{where}: {moved[path[:2]]} changed, so the saved value "
                                              f"would go to a new address: type it again", (path, key),
                                              secret.entry.line))
            else:
                edits.append((secret.start, secret.end, current_text[old.start:old.end]))
        if problems:
            raise ConfigEditError(problems)
        for start, end, value in sorted(edits, reverse=True):
            text = text[:start] + value + text[end:]
        return text

    def _scrubbed(self, problems: List[dict], *texts: str) -> List[dict]:
        """``problems`` with no secret of ``texts`` (nor a URL's credentials) in a message."""
        values = []
        for text in texts:
            for secret in self.secrets(text).values():
                value = text[secret.start:secret.end]
                values += [value, value.strip("'\""), *value.strip("'\"").splitlines()]
        redactor = Redactor()
        redactor.set_secrets(values)
        return [dict(p, message=redactor.redact(p["message"])) for p in problems]

    # -- checking and saving ------------------------------------------------------------
    def check(self, text: str) -> dict:
        """Validate a (masked) text as ``--check`` would: ``{"ok", "problems", "warnings"}``."""
        try:
            full = self.unmask(text)
            warnings = self._validate(full)
        except ConfigEditError as exc:
            return {"ok": False, "problems": exc.problems, "warnings": []}
        return {"ok": True, "problems": [], "warnings": warnings}

    def save(self, text: str) -> dict:
        """Validate, keep the current file as ``.bak``, write atomically. Raises ConfigEditError."""
        if len(text.encode("utf-8")) > MAX_CONFIG_BYTES:
            raise ConfigEditError([self._problem("the config is too large", None, None)])
        full = self.unmask(text)
        warnings = self._validate(full)
        self._write(full)
        return {"ok": True, "problems": [], "warnings": warnings}

    def edit_section(self, path: Sequence[str], values: Optional[dict], remove: bool = False) -> dict:
        """Set keys of a section (created if missing; an empty value removes the key) or
        remove the section, then save as ``save`` does. A secret sent back as shown (masked)
        keeps its saved value (``unmask``)."""
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
                if value in ("", None):
                    section.pop(key, None)
                else:
                    section[key] = _form_value(value)
        return self.save("\n".join(parsed.write()) + "\n")

    def _validate(self, text: str) -> List[dict]:
        """Load ``text`` with the loader from a file beside the config (so relative paths mean
        the same); raises ConfigEditError with each problem placed at its line. Returns the
        warnings, placed too. No message holds a secret of the text or of the file."""
        folder = os.path.dirname(self.path)
        fd, temp = tempfile.mkstemp(prefix=".oemgateway-check-", suffix=".conf", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            try:
                config = self.loader.load(temp)
                problems = self.file_roots.problems(config, *self._current(), self.loader.gateway_spec)
            except ConfigError as exc:
                problems = exc.problems
            if problems:
                raise ConfigEditError(self._scrubbed([self._locate(p.replace(temp, self.path), text)
                                                      for p in problems], text, self.read())) from None
            return self._scrubbed([self._locate(w.replace(temp, self.path), text) for w in config.warnings],
                                  text, self.read())
        finally:
            os.unlink(temp)

    def _current(self) -> Tuple[Optional[GatewayConfig], List[str]]:
        """The config in the file (None if it does not load) and its ``[gateway] file_roots``."""
        try:
            config = self.loader.load(self.path)
            return config, list(config.gateway["file_roots"])
        except ConfigError:
            pass
        try:
            roots = _parse(self.read()).get("gateway", {}).get("file_roots", [])
        except (ConfigEditError, AttributeError):
            roots = []
        return None, [roots] if isinstance(roots, str) else list(roots)

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
    def _problem(self, message: str, place: Optional[Tuple[Tuple[str, ...], str]], line: Optional[int]) -> dict:
        return {"message": message, "line": None if line is None else line + 1,
                "section": list(place[0]) if place else [], "key": place[1] if place else None}

    def _locate(self, message: str, text: str) -> dict:
        """A loader message as ``{"message", "line", "section", "key"}``: the line is that of
        the key it names (else of its section), 1-based."""
        rest = message[len(self.path):] if message.startswith(self.path) else message
        numbered = _PROBLEM_LINE.match(rest)
        if numbered:
            rest = rest[numbered.end():]
        place = _PROBLEM_PLACE.match(rest.lstrip(": "))
        if not place:
            return {"message": message, "line": int(numbered.group(1)) if numbered else None,
                    "section": [], "key": None}
        section = tuple(_SECTION_NAME.findall(place.group(1)))
        key = place.group(2) or place.group(3) or place.group(4)
        if numbered:
            line = int(numbered.group(1)) - 1
        else:
            line = next((e.line for e in configtext.entries(text) if e.path == section and e.key == key), None)
            if line is None:
                line = configtext.section_line(text, section)
        return {"message": message, "line": None if line is None else line + 1,
                "section": list(section), "key": key}


def _moved_destinations(text: str, current_text: str) -> Dict[Tuple[str, ...], str]:
    """The buffers whose address (DESTINATION_KEYS) differs between the texts: their section
    path -> the keys that changed, in words."""
    def addresses(source):
        found: Dict[Tuple[str, ...], Dict[str, str]] = {}
        for entry in configtext.entries(source):
            if entry.path[:1] == ("buffers",) and len(entry.path) >= 2 and entry.key in DESTINATION_KEYS:
                value = mask_url_credentials(source[entry.start:entry.end], MASK)   # the address only
                found.setdefault(entry.path[:2], {})[entry.key] = value
        return found
    new, old = addresses(text), addresses(current_text)
    moved = {}
    for path in set(new) | set(old):
        keys = sorted(k for k in set(new.get(path, {})) | set(old.get(path, {}))
                      if new.get(path, {}).get(k) != old.get(path, {}).get(k))
        if keys:
            moved[path] = " and ".join(keys)
    return moved


def _with_mask(text: str, secret: configtext.Secret) -> str:
    """The value ``secret`` is part of, as the page shows it (the secret part masked)."""
    entry = secret.entry
    return text[entry.start:secret.start] + MASK + text[secret.end:entry.end]


def _masked_dict(section: Section) -> dict:
    """A parsed (already masked) config as plain dicts; URL credentials masked in any value
    the text scan did not see as such (e.g. inside a list)."""
    def masked(value):
        if isinstance(value, str):
            return mask_url_credentials(value, MASK)
        if isinstance(value, list):
            return [masked(v) for v in value]
        return value
    out = {}
    for key, value in section.items():
        out[key] = _masked_dict(value) if isinstance(value, Section) else masked(value)
    return out


def _form_value(value):
    """A form's text as configobj should write it: ``a, b`` becomes a list."""
    if isinstance(value, list):
        return [str(v) for v in value]
    text = str(value)
    return [v.strip() for v in text.split(",") if v.strip()] if "," in text else text
