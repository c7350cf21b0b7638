"""Editing ``oemgateway.conf`` from the web page: secrets masked, every change validated with
the same ConfigLoader as ``--check`` before it is written, writes atomic with a backup in the
state folder (never beside the config, where a careless ``*.conf`` glob would pick it up).

The file's text is kept as the user wrote it (comments, layout): secrets are masked and
restored line by line, and the forms' section edits change only the lines they must
(``gateway.web.textedit``). Every save names the version of the file it was based on (a hash
of its bytes, ``version()``): a save based on a file that has changed since (another save, an
edit on disk) is refused with ``ConfigConflict``, never merged nor lost.
"""

import hashlib
import os
import re
import shutil
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

from configobj import ConfigObj, ConfigObjError, Section

from gateway import configtext
from gateway.config import ConfigError, ConfigLoader, GatewayConfig, parse_problem, section_label
from gateway.fileroots import FileRoots
from gateway.logs import Redactor, mask_url_credentials
from gateway.web import textedit

MASK = "********"
# Where a buffer sends (and with it, its secrets): changed on the page, its secrets are typed again.
DESTINATION_KEYS = frozenset({"url", "host", "port", "domain", "protocol"})
MAX_CONFIG_BYTES = 256 * 1024   # a big config is ~20 KiB; JSON may double it within LARGE_BODY
BACKUPS_KEPT = 10               # copies of the config before a save, in the backup folder

_PROBLEM_LINE = re.compile(r"^:(\d+): ")
_PROBLEM_PLACE = re.compile(r"^((?:\[+[^\]]+\]+ ?)+?)(?: ?(?::\s*key '([^']+)'|:\s*'([^']+)'|([^\s:=]+) = ))")
_SECTION_NAME = re.compile(r"\[+([^\]]+)\]+")


class ConfigEditError(Exception):
    """A change that cannot be made; ``problems`` are dicts with message, line, section, key."""

    def __init__(self, problems: List[dict]):
        self.problems = problems
        super().__init__("\n".join(p["message"] for p in problems))


class ConfigConflict(Exception):
    """A save based on a version of the file that is no longer the one on disk."""

    MESSAGE = ("Not saved: the config file changed after this page read it (saved from another "
               "page, or edited on the machine). Nothing was lost: your entries are still here. "
               "Reload the file to see the change, then make your edit again.")

    def __init__(self):
        super().__init__(self.MESSAGE)


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
                 protected: Sequence[str] = (), backup_folder: Optional[str] = None):
        self.path = os.path.abspath(path)
        self.loader = loader
        self.backup_folder = backup_folder
        self.file_roots = FileRoots(self.path, data_folder, [*protected, backup_folder])

    def version(self, text: Optional[str] = None) -> str:
        """A short hash of the file's text (or of ``text``): what a save must be based on."""
        data = (self.read() if text is None else text).encode("utf-8")
        return hashlib.sha256(data).hexdigest()[:16]

    def _check_base(self, current: str, base_version: Optional[str]) -> None:
        if base_version is not None and base_version != self.version(current):
            raise ConfigConflict()

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

    def scrubbed(self, problems: List[dict], *texts: str) -> List[dict]:
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

    def save(self, text: str, base_version: Optional[str] = None) -> dict:
        """Validate, back the current file up, write atomically. Raises ConfigEditError, or
        ConfigConflict if the file is no longer ``base_version`` (when given)."""
        if len(text.encode("utf-8")) > MAX_CONFIG_BYTES:
            raise ConfigEditError([self._problem("the config is too large", None, None)])
        self._check_base(self.read(), base_version)
        full = self.unmask(text)
        warnings = self._validate(full)
        self._write(full, base_version)
        return {"ok": True, "problems": [], "warnings": warnings, "version": self.version(full)}

    def edit_section(self, path: Sequence[str], values: Optional[dict], remove: bool = False,
                     base_version: Optional[str] = None) -> dict:
        """Set keys of a section (created if missing; an empty value removes the key) or
        remove the section, then save as ``save`` does. Only the lines of the keys changed are
        touched (``gateway.web.textedit``). A secret sent back as shown (masked) keeps its
        saved value (``unmask``)."""
        current = self.read()
        self._check_base(current, base_version)
        text = self.section_text(path, values, remove)
        return self.save(text, self.version(current))

    def _validate(self, text: str) -> List[dict]:
        """Load ``text`` as ``load`` does; returns the warnings, placed at their lines."""
        return self.load(text)[1]

    def load(self, text: str) -> Tuple[GatewayConfig, List[dict]]:
        """Load ``text`` (secrets in the clear) with the loader from a file beside the config (so
        relative paths mean the same): the config and its warnings; raises ConfigEditError with
        each problem placed at its line. No message holds a secret of the text or of the file."""
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
                raise ConfigEditError(self.scrubbed([self._locate(p.replace(temp, self.path), text)
                                                      for p in problems], text, self.read())) from None
            config.path = self.path
            return config, self.scrubbed([self._locate(w.replace(temp, self.path), text) for w in config.warnings],
                                          text, self.read())
        finally:
            os.unlink(temp)

    def section_text(self, path: Sequence[str], values: Optional[dict], remove: bool = False) -> str:
        """The (masked) file with one form's edit made: what ``edit_section`` would save."""
        if not path or any(not isinstance(p, str) or not p.strip() or "[" in p or "]" in p or "\n" in p
                           for p in path):
            raise ConfigEditError([self._problem("no section given", None, None)])
        for key in values or {}:
            if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][\w.-]*", key):
                raise ConfigEditError([self._problem(f"{key!r} is not a setting name", (tuple(path), str(key)), None)])
        masked = self.masked_text()
        if remove:
            return textedit.remove_section(masked, path)
        return textedit.set_values(masked, path, {k: _form_value(v) for k, v in (values or {}).items()})

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

    def _backup(self) -> Optional[str]:
        """Copy the file into the backup folder (the last BACKUPS_KEPT kept); its path, or None
        without a backup folder."""
        if not self.backup_folder:
            return None
        os.makedirs(self.backup_folder, mode=0o700, exist_ok=True)
        name = os.path.basename(self.path)
        target = os.path.join(self.backup_folder, f"{name}.{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**9:09d}")
        shutil.copy2(self.path, target)
        kept = sorted(f for f in os.listdir(self.backup_folder) if f.startswith(name + "."))
        for old in kept[:-BACKUPS_KEPT]:
            os.unlink(os.path.join(self.backup_folder, old))
        return target

    def _write(self, text: str, base_version: Optional[str] = None) -> None:
        """Back the file up, then replace it with ``text`` in one rename (same mode). A file
        changed on disk while the new text was checked is not overwritten (ConfigConflict)."""
        folder = os.path.dirname(self.path)
        mode = os.stat(self.path).st_mode & 0o7777
        self._check_base(self.read(), base_version)
        self._backup()
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
