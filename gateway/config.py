"""Reading and validating ``oemgateway.conf`` with configobj's own validation.

The file has a ``[gateway]`` section and ``[listeners]`` / ``[buffers]`` sections holding one
sub-section per plugin, each with a ``type``. Settings of a plugin may sit directly in its
section or, as in the original oem_gateway, in ``[[[init_settings]]]`` and
``[[[runtime_settings]]]``; both are read the same way, and the original names of settings
(``port_nb``) as today's (each plugin's ``RENAMED``, then its ``modernise``). Every problem is
reported with the file, its line, the section path and the key; every setting or section the
gateway does not read is a warning, with the name probably meant (``gateway.confighelp``).
"""

import ipaddress
import math
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Tuple
from urllib.parse import unquote

from configobj import ConfigObj, ConfigObjError, ParseError, Section, flatten_errors, get_extra_values
from validate import ValidateError, Validator, VdtValueError, is_float

from gateway import emonhub, missing_dependency
from gateway.confighelp import TOP_SECTIONS, Places, did_you_mean, section_label, suggest, syntax_problems
from gateway.logs import MASK, URL_USERINFO, Redactor, mask_url_credentials, parse_log_levels
from gateway.nodes import CHECKS as NODE_CHECKS, NODE_SPEC, NodeTable
from gateway.registry import Registry
from gateway.node_templates import template_node_name
from gateway.routing import listener_node_names, rule_warnings
from gateway.settings import CLOCK, FILE_ROOTS, LOGGING, NODE_DECODING, RUNNING, spec_of
from gateway.web import WEB_SETTINGS

CORE_PARTS = (LOGGING, RUNNING, NODE_DECODING, CLOCK, WEB_SETTINGS, FILE_ROOTS)
"""The daemon's own ``[gateway]`` parts, in the order the shipped config shows them; the
spool adds its own (``oemgateway.GATEWAY_PARTS``)."""
GATEWAY_SPEC = spec_of(CORE_PARTS)

GATEWAY_SECRETS = ("web_password_hash",)
# A key the gateway does not know (a typo, a section whose type is misspelled) is taken for a
# secret when its name says so: better a masked value too many than a key shown.
_SECRET_NAME = re.compile(r"pass|secret|token|api_?key|auth|credential", re.IGNORECASE)

LEGACY_SUBSECTIONS = ("init_settings", "runtime_settings")
MAX_DEPTH = 8   # section levels read; the deepest in use is [nodes] [[n]] [[[rx]]] (emonhub: 5)
PLUGIN_KINDS = ("listeners", "buffers")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(Exception):
    """The config cannot be used. ``problems`` lists every problem found, one line each;
    ``warnings`` what would be ignored in it (typos), found on the way."""

    def __init__(self, path: str, problems: List[str], warnings: Iterable[str] = ()):
        self.path = path
        self.problems = problems
        self.warnings = list(warnings)
        super().__init__("\n".join(problems))


@dataclass
class PluginConfig:
    """One listener or buffer as configured: its section name, class and validated settings."""

    name: str
    type_name: str
    cls: type
    settings: dict

    def secrets(self) -> List[str]:
        """The secret values to mask in logs: the ``SECRETS`` settings (each item of a list),
        or what the plugin's ``secret_values(settings)`` says, when it has one; and the
        credentials of any URL among the settings."""
        found = []
        if hasattr(self.cls, "secret_values"):
            found += [str(s) for s in self.cls.secret_values(self.settings) if s]
        return found + secrets_of(self.settings, lambda key: is_secret(key, self.cls))

    def masked(self) -> dict:
        """The settings, each secret replaced by ``***`` and URLs without their credentials."""
        return dict({"type": self.type_name}, **masked_settings(self.settings, lambda key: is_secret(key, self.cls)))


@dataclass
class GatewayConfig:
    path: str
    gateway: dict
    listeners: Dict[str, PluginConfig]
    buffers: Dict[str, PluginConfig]
    warnings: List[str] = field(default_factory=list)
    nodes: NodeTable = field(default_factory=NodeTable)
    file_secrets: List[str] = field(default_factory=list)   # the file's, keys not read included

    def secrets(self) -> List[str]:
        """Every secret value of the config: what the log, /status and the page must mask
        (a key the gateway does not read, ``api_key``, included)."""
        found = secrets_of(self.gateway, is_gateway_secret) + list(self.file_secrets)
        for plugin in list(self.listeners.values()) + list(self.buffers.values()):
            found.extend(plugin.secrets())
        return found

    def masked(self) -> dict:
        """The effective settings, secrets replaced by ``***``: safe to print or log."""
        return {"gateway": masked_settings(self.gateway, is_gateway_secret),
                "listeners": {name: p.masked() for name, p in self.listeners.items()},
                "buffers": {name: p.masked() for name, p in self.buffers.items()},
                "nodes": self.nodes.describe()}


# -- secrets ------------------------------------------------------------------------------
def is_secret(key: str, cls: Optional[type], any_plugin: Iterable[str] = ()) -> bool:
    """Whether setting ``key`` of a plugin of class ``cls`` holds a secret. ``cls`` None: the
    type is unknown (misspelled?), so a secret of any plugin (``any_plugin``) counts."""
    if _SECRET_NAME.search(key):
        return True
    return key in (getattr(cls, "SECRETS", ()) if cls is not None else any_plugin)


def is_gateway_secret(key: str) -> bool:
    return key in GATEWAY_SECRETS or bool(_SECRET_NAME.search(key))


def secret_names(registries: Dict[str, Registry]) -> frozenset:
    """The names of every plugin's secret settings (this imports every plugin)."""
    names = set(GATEWAY_SECRETS)
    for registry in registries.values():
        for type_name in registry.names():
            names.update(getattr(registry.resolve(type_name), "SECRETS", ()))
    return frozenset(names)


def url_credentials(value: str) -> List[str]:
    """The ``user:password``, user and password (as written and %-decoded) of every URL in
    ``value``."""
    found = []
    for userinfo in (m.group(2) for m in URL_USERINFO.finditer(value)):
        user, _, password = userinfo.partition(":")
        for part in (userinfo, user, password):
            found += [part, unquote(part)] if part else []
    return found


def secrets_of(settings, secret_key: Callable[[str], bool]) -> List[str]:
    """The secret values among ``settings`` (a dict or configobj Section): the values (each
    item of a list) of the keys ``secret_key`` names, and URL credentials in any value."""
    found = []
    for key, value in settings.items():
        items = value if isinstance(value, (list, tuple)) else [value]
        items = [str(item) for item in items if item not in (None, "") and not isinstance(item, dict)]
        if secret_key(str(key)):
            found += items
        for item in items:
            found += url_credentials(item)
    return found


def masked_settings(settings: dict, secret_key: Callable[[str], bool]) -> dict:
    """``settings`` with secret values as ``***`` and URLs without their credentials."""
    def masked(key, value):
        if secret_key(key) and value not in (None, "", [], ()):
            return MASK
        if isinstance(value, str):
            return mask_url_credentials(value)
        if isinstance(value, (list, tuple)):
            return [mask_url_credentials(v) if isinstance(v, str) else v for v in value]
        return value
    return {key: masked(key, value) for key, value in settings.items()}


def raw_secrets(raw: Section, registries: Dict[str, Registry]) -> List[str]:
    """The secret values of a config as parsed, before validation (types may be unknown)."""
    found = secrets_of(raw.get("gateway") if isinstance(raw.get("gateway"), Section) else {},
                       is_gateway_secret)
    for kind in PLUGIN_KINDS:
        group = raw.get(kind)
        for name in group.sections if isinstance(group, Section) else ():
            try:
                cls = registries[kind].resolve(str(group[name].get("type")))
                any_plugin: Iterable[str] = ()
            except LookupError:   # (only then are all plugins imported, to learn their names)
                cls, any_plugin = None, secret_names(registries)
            for section in [group[name]] + [group[name][s] for s in group[name].sections]:
                found += secrets_of(section, lambda key: is_secret(key, cls, any_plugin))
    for name in raw.sections:
        if name not in PLUGIN_KINDS + ("gateway",):
            found += _nested_secrets(raw[name])
    return found


def _nested_secrets(section: Section) -> List[str]:
    found = secrets_of(section, lambda key: bool(_SECRET_NAME.search(key)))
    for name in section.sections:
        found += _nested_secrets(section[name])
    return found


def parse_problem(error: Exception) -> str:
    """A configobj parse error without the text of the line (which may hold a secret)."""
    if isinstance(error, ParseError) and str(error).startswith("Invalid line"):
        return "this line is neither a [section] nor a key = value"
    return str(error)


_CUSTOM_CHECKS = {
    "loglevel": "one of " + ", ".join(LOG_LEVELS),
    "path": "a file path",
    **{name: text for name, (_, text) in NODE_CHECKS.items()},
}


def _describe_check(check: str) -> str:
    """A configspec check in words: ``integer(min=1, max=65535, default=5)`` -> ``a whole
    number from 1 to 65535``, ``option('a', 'b')`` -> ``one of a, b``."""
    name, _, args = check.partition("(")
    name = name.strip()
    if name in _CUSTOM_CHECKS:
        return _CUSTOM_CHECKS[name]
    keywords = dict(re.findall(r"(\w+)\s*=\s*('[^']*'|\"[^\"]*\"|[^,)]+)", args))
    low, high = (keywords.get(k, "").strip() for k in ("min", "max"))
    bounds = f" from {low} to {high}" if low and high else f" of at least {low}" if low else \
        f" of at most {high}" if high else ""
    if name == "integer":
        return "a whole number" + bounds
    if name == "float":
        return "a number" + bounds
    if name == "option":
        choices = re.findall(r"'([^']*)'|\"([^\"]*)\"", re.sub(r"\w+\s*=\s*('[^']*'|\"[^\"]*\"|[^,)]+)", "", args))
        return "one of " + ", ".join(a or b for a, b in choices)
    return {"boolean": "True or False", "string": "text", "force_list": "a list: values separated by commas",
            "list": "a list: values separated by commas", "pass": "anything"}.get(name, name)


class _Notes:
    """Where a section or key of the validated config was written: its line, its section as
    written (a legacy sub-section), its name as written (a legacy name)."""

    def __init__(self, places: Places):
        self.places = places
        self.origins: Dict[Tuple[Tuple[str, ...], str], Tuple[str, ...]] = {}
        self.names: Dict[Tuple[Tuple[str, ...], str], str] = {}

    def section(self, section: Tuple[str, ...], key: Optional[str] = None) -> Tuple[str, ...]:
        return self.origins.get((section, key), section) if key is not None else section

    def name(self, section: Tuple[str, ...], key: str) -> str:
        return self.names.get((section, key), key)

    def at(self, section: Tuple[str, ...], key: Optional[str] = None) -> str:
        """``file:line: [listeners] [[socket]]`` (the line of ``key``, else of the section)."""
        shown = self.section(section, key)
        written = self.name(section, key) if key is not None else None
        label = section_label(shown)
        return f"{self.places.at(shown, written) if shown else self.places.path}" + (f": {label}" if label else "")

    def key(self, section: Tuple[str, ...], key: str) -> str:
        """``file:line: [listeners] [[socket]] port_nb``."""
        return f"{self.at(section, key)} {self.name(section, key)}"

    def message(self, section: Tuple[str, ...], message: str, settings=()) -> str:
        """A plugin's message about its section, placed at the key it starts with, if any."""
        match = _LEADING_KEY.match(message)
        key = match.group(1) if match and match.group(1) in settings else None
        return f"{self.at(section, key)}: {message}"


_LEADING_KEY = re.compile(r"^([A-Za-z_][\w.-]*)\s*(?:=|:)")
_NODE_SECTION = re.compile(r"^\[nodes\] \[\[([^\]]+)\]\]")


def _line_of(message: str) -> int:
    """The line a message is about (for sorting; those about the whole file come first)."""
    match = _MESSAGE_LINE.match(message)
    return int(match.group(1)) if match else 0


_MESSAGE_LINE = re.compile(r"^.*?:(\d+): ")


def spec_keys(spec: str) -> List[str]:
    """The setting names of configspec lines (sub-section headers left out)."""
    return [line.split("=", 1)[0].strip() for line in spec.splitlines()
            if "=" in line and not line.strip().startswith("[")]


def _shown(value) -> str:
    """A value as the file wrote it: ``'abc'``, a list as ``a, b``."""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(item) for item in value)
    return f"'{value}'"


class ConfigLoader:
    """Reads a config file into a GatewayConfig, or raises ConfigError listing every problem."""

    def __init__(self, listeners: Registry, buffers: Registry, gateway_spec: str = ""):
        self.registries = {"listeners": listeners, "buffers": buffers}
        self.gateway_spec = GATEWAY_SPEC + gateway_spec

    def load(self, path: str) -> GatewayConfig:
        """The validated config; ConfigError (never another exception) if it cannot be used."""
        path = os.path.abspath(path)
        try:
            return self._load(path)
        except ConfigError:
            raise
        except ImportError as exc:   # a plugin's package is missing: not the file's fault
            if missing_dependency(exc) is None:
                raise ConfigError(path, [f"{path}: could not be checked (ImportError): {exc}"]) from exc
            raise
        except Exception as exc:   # a file odd in a way no check foresaw: still a clear answer
            # (the exception's text is not shown: it could quote a line, and so a secret)
            raise ConfigError(path, [f"{path}: could not be checked ({type(exc).__name__}): the file "
                                     "is unusual in a way the gateway does not handle"]) from exc

    def _load(self, path: str) -> GatewayConfig:
        places = Places(path, self._read(path))
        raw = self._parse(path, places)
        problems: List[str] = _too_deep(path, raw)
        if problems:
            raise ConfigError(path, problems)
        translated: List[str] = []   # what an emonhub.conf's translation says about it
        emonhub_file = emonhub.is_emonhub_config(raw)
        if emonhub_file:
            raw, translated = self._from_emonhub(raw, places)
        if not raw.scalars and not raw.sections:
            raise ConfigError(path, [f"{path}: the file is empty (or holds only comments): the gateway "
                                     "would read nothing and send nothing. Start from the shipped "
                                     "oemgateway.conf, or see the README's Configuration section"])
        file_secrets = raw_secrets(raw, self.registries)
        secrets = Redactor()   # a message may quote a value: none of them shows a secret
        secrets.set_secrets(file_secrets)
        notes = _Notes(places)
        misplaced = self._misplaced_plugins(raw, notes, problems)
        classes: Dict[Tuple[str, str], Tuple[str, type]] = {}
        checked_as: Dict[Tuple[str, str], Tuple[type, List[str]]] = {}   # sections of unknown type
        spec_lines = ["[gateway]"] + self.gateway_spec.splitlines()

        for kind in PLUGIN_KINDS:
            spec_lines.append(f"[{kind}]")
            section = raw.get(kind)
            if section is None:
                continue
            if not isinstance(section, Section):
                problems.append(f"{places.at((), kind)}: {kind} must be a section [{kind}], not a key")
                continue
            if isinstance(section.get("type"), str) and self._kind_of(section["type"]):
                problems.append(f"{places.at((kind,), 'type')}: [{kind}] type = {section['type']}: the "
                                f"settings here are directly in [{kind}], so they would not be read: each "
                                f"{self.registries[kind].kind} has its own [[name]] section; write e.g. "
                                f"[[{section['type'].lower()}]] on the line above them")
            for name in section.sections:
                plugin = section[name]
                problems += self._hoist_legacy(notes, (kind, name), plugin)
                cls, extra_keys, label = self._plugin_class(notes, kind, name, plugin, problems)
                if cls is None:
                    continue
                problems += self._rename_legacy(notes, (kind, name), plugin, cls)
                spec_lines.append(f"[[{name}]]")
                spec_lines.append("type = string")
                spec_lines += cls.settings_spec().splitlines() + [f"{key} = pass(default=None)" for key in extra_keys]
                if extra_keys or not self._resolves(kind, plugin.get("type")):
                    checked_as[(kind, name)] = (cls, label)
                else:
                    classes[(kind, name)] = (self.registries[kind].canonical(plugin["type"]), cls)

        spec_lines += self._node_spec_lines(notes, raw, problems)
        config = ConfigObj(raw.dict(), configspec=spec_lines, interpolation=False)
        result = config.validate(self._validator(path), preserve_errors=True)
        problems += self._validation_problems(notes, config, result)
        warnings = self._extra_value_warnings(notes, config, classes, checked_as, misplaced)
        invalid = {tuple(p[:2]) for p, _, _ in flatten_errors(config, result)}
        plugins = {kind: {} for kind in PLUGIN_KINDS}
        for (kind, name), (type_name, cls) in classes.items():
            if (kind, name) in invalid:
                continue
            section = config[kind][name]   # (a setting it does not know is warned about, not kept)
            settings = {k: v for k, v in section.items() if k != "type" and k in section.configspec
                        and not isinstance(v, Section)}
            problems += [notes.message((kind, name), m, settings) for m in cls.check_settings(settings)]
            renamed = {key: notes.names[((kind, name), key)] for key in settings
                       if ((kind, name), key) in notes.names}
            settings = cls.modernise(settings, renamed)
            plugins[kind][name] = PluginConfig(name, type_name, cls, settings)
            warnings += [notes.message((kind, name), m, settings) for m in cls.warn_settings(settings)]
        gateway_ok = isinstance(config["gateway"], Section) and ("gateway",) not in invalid
        if gateway_ok:
            warnings += [f"{notes.at(('gateway',), 'log_levels')}: {message}"
                         for message in parse_log_levels(config["gateway"]["log_levels"])[1]]
        problems += _claim_conflicts(notes, config["gateway"] if gateway_ok else {}, plugins)
        nodes, node_problems, node_warnings = NodeTable.from_config(
            {k: v for k, v in config["nodes"].items() if ("nodes", k) not in invalid})
        problems += [self._node_message(places, message) for message in node_problems]
        warnings += [self._node_message(places, message) for message in node_warnings]
        # (an emonhub file's translation names each interfacer that does not run)
        warnings += translated if emonhub_file else self._nothing_to_do(path, raw)
        warnings += self._routing_warnings(notes, plugins, nodes if not node_problems else None,
                                           gateway_ok and config["gateway"]["node_templates"])
        problems = sorted((secrets.redact(p) for p in problems), key=_line_of)
        warnings = sorted((secrets.redact(w) for w in warnings), key=_line_of)
        if problems:
            raise ConfigError(path, problems, warnings)
        gateway = {k: v for k, v in config["gateway"].items() if k in config["gateway"].configspec}
        return GatewayConfig(path, gateway, plugins["listeners"], plugins["buffers"], warnings, nodes,
                             file_secrets)

    # -- steps --------------------------------------------------------------------------
    def available(self, kind: str, type_name: str) -> Optional[type]:
        """The plugin class of our ``type_name`` of ``kind``, or None if there is none."""
        try:
            return self.registries[kind].resolve(type_name)
        except LookupError:
            return None

    def _from_emonhub(self, raw: ConfigObj, places: Places) -> Tuple[ConfigObj, List[str]]:
        """An emonhub.conf as our sections (``gateway.emonhub``), its messages placed at the
        lines of the emonhub file; messages about our sections point there too."""
        translation = emonhub.translate(raw, self.available)
        for (ours, our_key), (theirs, their_key) in translation.origins.items():
            line = places.line(theirs, their_key)
            if line is None:
                continue
            if our_key is None:
                places.sections.setdefault(ours, line)
            else:
                places.keys.setdefault((ours, our_key), line)
        messages = [f"{places.at(where, key)}: {section_label(where)}{' ' + key if key else ''}: {message}"
                    for where, key, message in translation.warnings]
        return translation.config, messages

    @staticmethod
    def _read(path: str) -> str:
        if not os.path.exists(path):
            raise ConfigError(path, [f"{path}: no such file"])
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError as exc:
            raise ConfigError(path, [f"{path}: cannot read: {exc.strerror or exc}"]) from None

    def _parse(self, path: str, places: Places) -> ConfigObj:
        try:
            return ConfigObj(path, file_error=True, interpolation=False, encoding="utf-8")
        except ConfigObjError as exc:
            raise ConfigError(path, syntax_problems(places, exc, self._all_keys())) from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else \
                "it is not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)
            raise ConfigError(path, [f"{path}: cannot read: {reason}"]) from None

    def _all_keys(self) -> List[str]:
        """Every setting name of [gateway] and of the plugin types (all of them imported)."""
        keys = spec_keys(self.gateway_spec) + spec_keys(NODE_SPEC) + ["type"]
        for registry in self.registries.values():
            for type_name in registry.names():
                cls = registry.resolve(type_name)
                keys += spec_keys(cls.settings_spec()) + list(cls.RENAMED)
        return keys

    def _resolves(self, kind: str, type_name) -> bool:
        try:
            self.registries[kind].canonical(str(type_name))
            return True
        except LookupError:
            return False

    def _kind_of(self, type_name) -> Optional[str]:
        """Which kind of plugin (``listeners``, ``buffers``) a ``type`` names, if any."""
        if not isinstance(type_name, str):
            return None
        return next((kind for kind in PLUGIN_KINDS if self._resolves(kind, type_name)), None)

    def _misplaced_plugins(self, raw: ConfigObj, notes: "_Notes", problems: List[str]) -> List[Tuple[str, ...]]:
        """Sections with a listener's or buffer's ``type`` that are not where one is read (a
        ``[socket]`` at the top, a ``[[[socket]]]`` inside another listener, a ``[[file]]``
        under ``[gateway]``): each is an error, never a section silently ignored."""
        found = []
        stack: List[Tuple[Section, Tuple[str, ...]]] = [(raw, ())]
        while stack:
            section, where = stack.pop()
            for name in section.sections:
                inner = where + (name,)
                kind = self._kind_of(section[name].get("type"))
                if kind is None or (len(inner) == 2 and inner[0] in PLUGIN_KINDS) or inner[0] in PLUGIN_KINDS \
                        and len(inner) == 1:
                    stack.append((section[name], inner))
                    continue
                found.append(inner)
                singular = self.registries[kind].kind
                hint = ""
                if inner[0] not in TOP_SECTIONS and len(inner) > 1:
                    guess = suggest(inner[0], TOP_SECTIONS)
                    hint = f" ([{inner[0]}] is not a section the gateway reads" + \
                        (f"; did you mean [{guess}]?)" if guess else ")")
                problems.append(
                    f"{notes.at(inner, 'type')}: type = {section[name]['type']} makes this a {singular}, "
                    f"but a {singular} is read only as a [[name]] section (two brackets) directly under "
                    f"[{kind}]; here it is not read{hint}: move it into [{kind}], as [[{name}]]")
        return found

    def _plugin_class(self, notes, kind: str, name: str, plugin: Section, problems: List[str]):
        """``(class, extra keys, what)`` to check the section's settings with. For an unknown
        type (an error), the closest type's class, so that its other mistakes show too; with
        none close, the settings common to every type (``extra keys``: the others, not
        checked). ``what`` names the plugin in messages: ``a socket listener``."""
        registry = self.registries[kind]
        where = (kind, name)
        type_name = plugin.get("type")
        if not type_name or isinstance(type_name, (list, Section)):
            problems.append(f"{notes.at(where)}: the key 'type' is missing, so the gateway does not "
                            f"know what this {registry.kind} is (types: {', '.join(registry.names())})")
            return None, [], ""
        try:
            return registry.resolve(type_name), [], f"{registry.canonical(type_name)} {registry.kind}s"
        except LookupError:
            pass
        other = next((k for k in PLUGIN_KINDS if k != kind and self._resolves(k, type_name)), None)
        if other is not None:
            problems.append(f"{notes.at(where, 'type')} type = {type_name}: {type_name} is a "
                            f"{self.registries[other].kind} type, but this section is under [{kind}]: "
                            f"move it under [{other}]")
            return None, [], ""
        guess = registry.suggest(type_name)
        if guess is not None:
            problems.append(f"{notes.at(where, 'type')} type = {type_name}: there is no {registry.kind} "
                            f"type '{type_name}'; did you mean '{guess}'? (the section's other settings "
                            f"are checked as those of {guess} {registry.kind}s)")
            return registry.resolve(guess), [], f"{guess} {registry.kind}s"
        problems.append(f"{notes.at(where, 'type')} type = {type_name}: there is no {registry.kind} type "
                        f"'{type_name}' (types: {', '.join(registry.names())}; the original gateway's "
                        f"names work too)")
        return self._common_settings(registry)

    @staticmethod
    def _common_settings(registry: Registry):
        """A stand-in class checking what every type of ``registry`` has, and the other keys
        any type has (accepted unchecked)."""
        specs = [registry.resolve(name).settings_spec().splitlines() for name in registry.names()]
        common = [line for line in specs[0] if all(line in spec for spec in specs[1:])]
        every = {key for spec in specs for key in spec_keys("\n".join(spec))}
        renamed = {old for name in registry.names() for old in registry.resolve(name).RENAMED}
        stand_in = type("AnyType", (), {"settings_spec": staticmethod(lambda: "\n".join(common)),
                                        "RENAMED": {}})
        return (stand_in, sorted((every | renamed) - set(spec_keys("\n".join(common)))),
                f"any {registry.kind} type")

    @staticmethod
    def _rename_legacy(notes, where: Tuple[str, ...], plugin: Section, cls) -> List[str]:
        """Read the original gateway's names of settings (``port_nb``) as today's (``port``)."""
        problems = []
        for old, new in getattr(cls, "RENAMED", {}).items():
            if old not in plugin:
                continue
            if new in plugin and plugin[new] != plugin[old]:
                problems.append(f"{notes.key(where, old)} = {plugin[old]} and {new} = {plugin[new]} "
                                f"disagree: {old} is the original name of {new}; keep one")
                continue
            value = plugin.pop(old)
            if new not in plugin:
                plugin[new] = value
                notes.origins[(where, new)] = notes.origins.pop((where, old), where)
                notes.names[(where, new)] = old
        return problems

    def _node_spec_lines(self, notes, raw, problems: List[str]) -> List[str]:
        """The ``[nodes]`` configspec; emonhub's ``[[[rx]]]`` keys are read as the node's own."""
        section = raw.get("nodes")
        if section is not None and not isinstance(section, Section):
            problems.append(f"{notes.places.at((), 'nodes')}: nodes must be a section [nodes], not a key")
            del raw["nodes"]
        elif section is not None:
            for node in section.sections:
                problems += self._hoist_legacy(notes, ("nodes", node), section[node], ("rx",))
        return ["[nodes]", "[[__many__]]"] + NODE_SPEC.splitlines()

    @staticmethod
    def _hoist_legacy(notes, section_path, plugin: Section, subsections=LEGACY_SUBSECTIONS) -> List[str]:
        """Move keys of ``init_settings``/``runtime_settings`` up into the plugin's section."""
        problems = []
        for sub in subsections:
            if sub not in plugin:
                continue
            if not isinstance(plugin[sub], Section):
                problems.append(f"{notes.at(section_path, sub)} {sub} must be a section [[[{sub}]]], "
                                "not a key")
                continue
            for key, value in list(plugin[sub].items()):
                if key in plugin:
                    problems.append(f"{notes.places.at(section_path + (sub,), key)}: "
                                    f"{section_label(section_path)}: key '{key}' is set both in the section "
                                    f"and in [[[{sub}]]]: keep one")
                    continue
                plugin[key] = value
                notes.origins[(section_path, key)] = section_path + (sub,)
            del plugin[sub]
        return problems

    @staticmethod
    def _validator(path: str) -> Validator:
        base = os.path.dirname(path)

        def path_check(value, *args, **kwargs):
            """A file path; relative paths are relative to the config file's folder."""
            if not isinstance(value, str):
                raise VdtValueError(value)
            return os.path.join(base, os.path.expanduser(value)) if value else value

        def loglevel_check(value, *args, **kwargs):
            if not isinstance(value, str) or value.upper() not in LOG_LEVELS:
                raise VdtValueError(value)
            return value.upper()

        def finite_float_check(value, min=None, max=None):
            """configobj's float, without nan and inf (which pass its min/max tests)."""
            number = is_float(value, min, max)
            if not math.isfinite(number):
                raise VdtValueError(value)
            return number

        return Validator({"path": path_check, "loglevel": loglevel_check, "float": finite_float_check,
                          **{name: check for name, (check, _) in NODE_CHECKS.items()}})

    @staticmethod
    def _validation_problems(notes, config, result) -> List[str]:
        problems = []
        for section_path, key, error in flatten_errors(config, result):
            section_path = tuple(section_path)
            check = config
            for name in section_path:
                check = check[name]
            spec = check.configspec.get(key, "") if key else ""
            expected = _describe_check(str(spec)) if not isinstance(spec, Section) else ""
            if key is None:
                problems.append(f"{notes.at(section_path)}: section is missing")
            elif isinstance(spec, Section):
                if section_path + (key,) not in (("listeners",), ("buffers",)):   # reported already
                    problems.append(f"{notes.places.at(section_path, key)}: {key} must be a section "
                                    f"{section_label(section_path + (key,))}, not a key")
            elif error is False:
                problems.append(f"{notes.at(section_path)}: key '{key}' is required (expected {expected})")
            else:
                reason = str(error) if isinstance(error, ValidateError) and str(error) else "invalid value"
                problems.append(f"{notes.key(section_path, key)} = {_shown(check.get(key))}: "
                                f"{reason.rstrip('.')} (expected {expected})")
        return problems

    def _extra_value_warnings(self, notes, config, classes, checked_as, misplaced) -> List[str]:
        """Sections and settings the gateway does not read: each a warning saying so, with the
        setting meant when one is close (``api_key``: did you mean ``apikey``?)."""
        warnings = []
        gateway_keys = spec_keys(self.gateway_spec)
        for section_path, name in get_extra_values(config):
            section_path = tuple(section_path)
            inner = section_path + (name,)
            if any(m[:len(inner)] == inner for m in misplaced):
                continue   # a listener or buffer in the wrong place: an error already
            parent = config
            for part in section_path:
                parent = parent[part]
            is_section = isinstance(parent.get(name), Section)
            at = notes.places.at(notes.section(section_path, name), name) if not is_section else \
                notes.places.at(inner)
            shown = "[" * len(inner) + name + "]" * len(inner) if is_section else f"'{name}'"
            where = section_label(notes.section(section_path, name))
            if not section_path:
                if is_section:
                    warnings.append(f"{at}: [{name}] is not a section the gateway reads and is ignored"
                                    f"{did_you_mean(name, TOP_SECTIONS)} (the sections are [gateway], "
                                    "[listeners], [buffers] and [nodes])")
                elif name not in TOP_SECTIONS:
                    hint = "; it is a [gateway] setting: put it under [gateway]" if name in gateway_keys else ""
                    warnings.append(f"{at}: '{name}' is outside any section and is ignored{hint}")
                continue
            if section_path == ("gateway",):
                what = "" if is_section else did_you_mean(name, gateway_keys) or self._elsewhere(name)
                warnings.append(f"{at}: [gateway]: {shown} is not a [gateway] setting and is ignored{what}")
            elif len(section_path) == 1 and section_path[0] in PLUGIN_KINDS:
                singular = self.registries[section_path[0]].kind
                if not is_section and name != "type":
                    warnings.append(f"{at}: [{section_path[0]}]: '{name}' is directly in "
                                    f"[{section_path[0]}] and is ignored: a {singular}'s settings go in "
                                    f"its own [[name]] section")
            elif len(section_path) == 2 and section_path[0] in PLUGIN_KINDS:
                warnings.append(self._plugin_extra(at, where, section_path, name, is_section,
                                                   classes, checked_as, gateway_keys, parent))
            elif section_path[0] == "nodes" and len(section_path) in (2, 3) and is_section:
                warnings.append(f"{at}: {where}: section {shown} is not read and is ignored (a node has "
                                f"[[[rx]]] and [[[tx]]]){did_you_mean(name, ['rx', 'tx'])}")
            elif section_path[0] == "nodes" and len(section_path) in (2, 3):
                warnings.append(f"{at}: {where}: {shown} is not a node setting and is ignored"
                                f"{did_you_mean(name, spec_keys(NODE_SPEC))}")
            else:
                warnings.append(f"{at}: {where}: {shown} is not a known setting and is ignored")
        return warnings

    def _plugin_extra(self, at, where, section_path, name, is_section, classes, checked_as,
                      gateway_keys, section) -> str:
        if section_path in classes:
            type_name, cls = classes[section_path]
            what = f"{type_name} {self.registries[section_path[0]].kind}s"
        else:
            cls, what = checked_as[section_path]
        if is_section:
            return (f"{at}: {where}: section [[[{name}]]] is not read in {what} and is ignored"
                    f"{did_you_mean(name, LEGACY_SUBSECTIONS)}")
        candidates = spec_keys(cls.settings_spec()) + list(getattr(cls, "RENAMED", {}))
        hint = did_you_mean(name, candidates)
        guess = suggest(name, candidates)
        if hint and section.get(guess) in (None, "", []):   # the setting meant is missing: say so
            hint += f" ('{guess}' itself is not set)"
        if not hint and name in gateway_keys:
            hint = "; it is a [gateway] setting: put it under [gateway]"
        return f"{at}: {where}: '{name}' is not a setting of {what} and is ignored{hint}"

    def _elsewhere(self, name: str) -> str:
        """``; it is a setting of socket listeners, not of [gateway]`` when it is one."""
        for kind, registry in self.registries.items():
            types = [type_name for type_name in registry.names()
                     if name in spec_keys(registry.resolve(type_name).settings_spec())]
            if types:
                which = " or ".join([", ".join(types[:-1]), types[-1]] if len(types) > 1 else types)
                return f"; it is a setting of {which} {registry.kind}s: put it in their section"
        return ""

    @staticmethod
    def _routing_warnings(notes, plugins, nodes: Optional[NodeTable], templates: bool) -> List[str]:
        """Routing rules (``from_listeners``, ``from_nodes``) that can match nothing."""
        known = listener_node_names({n: p.settings for n, p in plugins["listeners"].items()})
        if nodes is not None:
            for node, entry in nodes.describe().items():
                known += [str(node)] + ([str(entry["nodename"])] if entry.get("nodename") else [])
        is_template_name = template_node_name if templates else (lambda name: False)
        return rule_warnings({n: p.settings for n, p in plugins["buffers"].items()}, plugins["listeners"], known,
                             lambda buffer, key: notes.key(("buffers", buffer), key), is_template_name)

    @staticmethod
    def _node_message(places: Places, message: str) -> str:
        match = _NODE_SECTION.match(message)
        return f"{places.at(('nodes', match.group(1))) if match else places.path}: {message}"

    @staticmethod
    def _nothing_to_do(path: str, raw: ConfigObj) -> List[str]:
        """What a config without listeners, or without buffers, means for the user."""
        warnings = []
        listeners, buffers = (raw.get(kind) for kind in PLUGIN_KINDS)
        if not isinstance(listeners, Section) or not listeners.sections:
            warnings.append(f"{path}: no listeners: nothing will be read (add one under [listeners], "
                            "e.g. [[socket]] with type = socket)")
        if not isinstance(buffers, Section) or not buffers.sections:
            warnings.append(f"{path}: no buffers: what is read is sent nowhere (add one under [buffers], "
                            "e.g. [[file]] with type = file)")
        return warnings


# -- checks across the whole file ---------------------------------------------------------------
def _too_deep(path: str, raw: ConfigObj) -> List[str]:
    """Sections nested deeper than anything the gateway reads (and deep enough to exhaust
    Python's recursion in configobj): found without recursing."""
    stack: List[Tuple[Section, Tuple[str, ...]]] = [(raw, ())]
    while stack:
        section, where = stack.pop()
        for name in section.sections:
            inner = where + (name,)
            if len(inner) > MAX_DEPTH:
                return [f"{path}: {section_label(where)}: its section '{name}' is nested {len(inner)} "
                        f"levels deep, more than the {MAX_DEPTH} a config can have (check the brackets)"]
            stack.append((section[name], inner))
    return []


ANY_ADDRESS = ("", "0.0.0.0", "::")


def is_host(text: str) -> bool:
    """An IP address, or something that could be a host name (resolved when a port opens)."""
    try:
        ipaddress.ip_address(text.split("%")[0])
        return True
    except ValueError:
        pass
    labels = text.rstrip(".").split(".")
    if ":" in text or all(label.isdigit() for label in labels):
        return False   # looks like an address but is none: 999.1.1.1, 1::2::3
    return all(label and len(label) <= 63 and label.replace("-", "").replace("_", "").isalnum()
               for label in labels)


def host_port(host: str, port: int) -> str:
    """``127.0.0.1:80``, ``[::]:80``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _same_endpoint(a: tuple, b: tuple) -> bool:
    """Would two claims collide: the same TCP port on overlapping addresses, the same device?"""
    if a[0] != b[0]:
        return False
    if a[0] == "device":
        return a[1] == b[1]
    (_, host_a, port_a), (_, host_b, port_b) = a, b
    if port_a != port_b:
        return False
    loopback = {"localhost", "127.0.0.1", "::1"}
    return host_a == host_b or host_a in ANY_ADDRESS or host_b in ANY_ADDRESS \
        or (host_a in loopback and host_b in loopback and (":" in host_a) == (":" in host_b))


def _claim_conflicts(notes: "_Notes", gateway: dict, plugins: dict) -> List[str]:
    """Two parts of the config that would need the same port or device: one of them would fail
    at start. Each plugin says what it needs with ``claims(settings)``: ``(key, claim)`` pairs,
    a claim being ``("tcp", host, port)`` or ``("device", path)``."""
    claims: List[Tuple[Tuple[str, ...], str, tuple]] = []
    for port_key, bind_key in (("status_port", "status_bind"), ("web_port", "web_bind")):
        if gateway.get(port_key):
            claims.append((("gateway",), port_key, ("tcp", gateway[bind_key], gateway[port_key])))
    for kind in PLUGIN_KINDS:
        for name, plugin in plugins[kind].items():
            for key, claim in getattr(plugin.cls, "claims", lambda settings: [])(plugin.settings):
                claims.append(((kind, name), key, claim))
    problems = []
    for index, (where, key, claim) in enumerate(claims):
        other = next((c for c in claims[:index] if _same_endpoint(c[2], claim)), None)
        if other is None:
            continue
        first = f"{section_label(notes.section(other[0], other[1]))} {notes.name(other[0], other[1])}"
        if claim[0] == "device":
            problems.append(f"{notes.key(where, key)} = {claim[1]}: the same device as {first}; a serial "
                            "port has one reader")
        else:
            problems.append(f"{notes.key(where, key)} = {claim[2]}: {host_port(*claim[1:])} overlaps "
                            f"{first} ({host_port(*other[2][1:])}): one port cannot be listened on twice")
    for bind_key in ("status_bind", "web_bind"):
        if not is_host(gateway.get(bind_key) or "0.0.0.0"):
            problems.append(f"{notes.key(('gateway',), bind_key)} = {gateway[bind_key]}: not an IP "
                            "address nor a host name (e.g. 127.0.0.1, or 0.0.0.0 for every interface)")
    return problems
