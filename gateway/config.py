"""Reading and validating ``oemgateway.conf`` with configobj's own validation.

The file has a ``[gateway]`` section and ``[listeners]`` / ``[buffers]`` sections holding one
sub-section per plugin, each with a ``type``. Settings of a plugin may sit directly in its
section or, as in the original oem_gateway, in ``[[[init_settings]]]`` and
``[[[runtime_settings]]]``; both are read the same way. Every problem is reported with the
file, the section path and the key.
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

from gateway.logs import MASK, URL_USERINFO, Redactor, mask_url_credentials
from gateway.nodes import CHECKS as NODE_CHECKS, NODE_SPEC, NodeTable
from gateway.registry import Registry

GATEWAY_SPEC = """
loglevel = loglevel(default='INFO')
config_check_interval = float(min=0, max=3600, default=2)
shutdown_timeout = float(min=0, max=3600, default=5)
clock = option('auto', 'trusted', 'untrusted', default='auto')
log_levels = force_list(default=list())
log_max_mb = float(min=0.01, max=1024, default=5)
log_backups = integer(min=0, max=100, default=1)
syslog = boolean(default=False)
status_port = integer(min=0, max=65535, default=0)
status_bind = string(default='127.0.0.1')
web_port = integer(min=0, max=65535, default=0)
web_bind = string(default='127.0.0.1')
web_password_hash = string(default='')
file_roots = force_list(default=list())
"""

GATEWAY_SECRETS = ("web_password_hash",)
# A key the gateway does not know (a typo, a section whose type is misspelled) is taken for a
# secret when its name says so: better a masked value too many than a key shown.
_SECRET_NAME = re.compile(r"pass|secret|token|api_?key|auth|credential", re.IGNORECASE)

LEGACY_SUBSECTIONS = ("init_settings", "runtime_settings")
MAX_DEPTH = 8   # section levels read; the deepest in use is [nodes] [[n]] [[[rx]]] (emonhub: 5)
PLUGIN_KINDS = ("listeners", "buffers")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(Exception):
    """The config cannot be used. ``problems`` lists every problem found, one line each."""

    def __init__(self, path: str, problems: List[str]):
        self.path = path
        self.problems = problems
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

    def secrets(self) -> List[str]:
        """Every secret value of the config: what the log, /status and the page must mask."""
        found = secrets_of(self.gateway, is_gateway_secret)
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


def section_label(path: Tuple[str, ...]) -> str:
    """``('listeners', 'Socket')`` -> ``[listeners] [[Socket]]``."""
    return " ".join("[" * depth + name + "]" * depth for depth, name in enumerate(path, 1))


_CUSTOM_CHECKS = {
    "loglevel": "one of " + ", ".join(LOG_LEVELS),
    "path": "a file path",
    **{name: text for name, (_, text) in NODE_CHECKS.items()},
}


def _describe_check(check: str) -> str:
    """``integer(min=1, default=5)`` -> ``integer(min=1)``, custom checks in words."""
    name = check.split("(", 1)[0]
    if name in _CUSTOM_CHECKS:
        return _CUSTOM_CHECKS[name]
    return re.sub(r",?\s*default=(?:'[^']*'|\"[^\"]*\"|[^,)]*)", "", check).replace("()", "")


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
        except Exception as exc:   # a file odd in a way no check foresaw: still a clear answer
            # (the exception's text is not shown: it could quote a line, and so a secret)
            raise ConfigError(path, [f"{path}: could not be checked ({type(exc).__name__}): the file "
                                     "is unusual in a way the gateway does not handle"]) from exc

    def _load(self, path: str) -> GatewayConfig:
        raw = self._parse(path)
        problems: List[str] = _too_deep(path, raw)
        if problems:
            raise ConfigError(path, problems)
        origins: Dict[Tuple[Tuple[str, ...], str], Tuple[str, ...]] = {}
        classes: Dict[Tuple[str, str], Tuple[str, type]] = {}
        spec_lines = ["[gateway]"] + self.gateway_spec.splitlines()

        for kind in PLUGIN_KINDS:
            spec_lines.append(f"[{kind}]")
            section = raw.get(kind)
            if section is None:
                continue
            if not isinstance(section, Section):
                problems.append(f"{path}: {kind} must be a section [{kind}], not a key")
                continue
            for name in section.sections:
                plugin = section[name]
                problems += self._hoist_legacy(path, (kind, name), plugin, origins)
                type_name = plugin.get("type")
                if not type_name or isinstance(type_name, (list, Section)):
                    problems.append(f"{path}: {section_label((kind, name))}: key 'type' is missing "
                                    f"(one of: {', '.join(self.registries[kind].names())})")
                    continue
                try:
                    cls = self.registries[kind].resolve(type_name)
                except LookupError as exc:
                    problems.append(f"{path}: {section_label((kind, name))} type = {type_name}: {exc}")
                    continue
                classes[(kind, name)] = (self.registries[kind].canonical(type_name), cls)
                spec_lines.append(f"[[{name}]]")
                spec_lines.append("type = string")
                spec_lines += cls.settings_spec().splitlines()

        spec_lines += self._node_spec_lines(path, raw, origins, problems)
        config = ConfigObj(raw.dict(), configspec=spec_lines, interpolation=False)
        result = config.validate(self._validator(path), preserve_errors=True)
        problems += self._validation_problems(path, config, result, spec_lines, origins)
        warnings = self._extra_value_warnings(path, config, classes, origins)
        invalid = {tuple(p[:2]) for p, _, _ in flatten_errors(config, result)}
        plugins = {kind: {} for kind in PLUGIN_KINDS}
        for (kind, name), (type_name, cls) in classes.items():
            if (kind, name) in invalid:
                continue
            settings = {k: v for k, v in config[kind][name].items() if k != "type"
                        and not isinstance(v, Section)}
            plugins[kind][name] = PluginConfig(name, type_name, cls, settings)
            for message in cls.check_settings(settings):
                problems.append(f"{path}: {section_label((kind, name))}: {message}")
            for message in cls.warn_settings(settings):
                warnings.append(f"{path}: {section_label((kind, name))}: {message}")
        gateway_ok = isinstance(config["gateway"], Section) and ("gateway",) not in invalid
        problems += _claim_conflicts(path, config["gateway"] if gateway_ok else {}, plugins, origins)
        nodes, node_problems, node_warnings = NodeTable.from_config(
            {k: v for k, v in config["nodes"].items() if ("nodes", k) not in invalid})
        problems += [f"{path}: {message}" for message in node_problems]
        warnings += [f"{path}: {message}" for message in node_warnings]
        secrets = Redactor()   # a message may quote a value: none of them shows a secret
        secrets.set_secrets(raw_secrets(raw, self.registries))
        problems = [secrets.redact(p) for p in problems]
        warnings = [secrets.redact(w) for w in warnings]
        if problems:
            raise ConfigError(path, problems)
        return GatewayConfig(path, dict(config["gateway"]), plugins["listeners"], plugins["buffers"],
                             warnings, nodes)

    # -- steps --------------------------------------------------------------------------
    @staticmethod
    def _parse(path: str) -> ConfigObj:
        if not os.path.exists(path):
            raise ConfigError(path, [f"{path}: no such file"])
        try:
            return ConfigObj(path, file_error=True, interpolation=False, encoding="utf-8")
        except ConfigObjError as exc:
            errors = getattr(exc, "errors", None) or [exc]
            raise ConfigError(path, [f"{path}:{getattr(e, 'line_number', '?')}: {parse_problem(e)}"
                                     for e in errors]) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(path, [f"{path}: cannot read: {exc}"]) from None

    @classmethod
    def _node_spec_lines(cls, path, raw, origins, problems: List[str]) -> List[str]:
        """The ``[nodes]`` configspec; emonhub's ``[[[rx]]]`` keys are read as the node's own."""
        section = raw.get("nodes")
        if section is not None and not isinstance(section, Section):
            problems.append(f"{path}: nodes must be a section [nodes], not a key")
            del raw["nodes"]
        elif section is not None:
            for node in section.sections:
                problems += cls._hoist_legacy(path, ("nodes", node), section[node], origins, ("rx",))
        return ["[nodes]", "[[__many__]]"] + NODE_SPEC.splitlines()

    @staticmethod
    def _hoist_legacy(path, section_path, plugin: Section, origins,
                      subsections=LEGACY_SUBSECTIONS) -> List[str]:
        """Move keys of ``init_settings``/``runtime_settings`` up into the plugin's section."""
        problems = []
        for sub in subsections:
            if sub not in plugin:
                continue
            if not isinstance(plugin[sub], Section):
                problems.append(f"{path}: {section_label(section_path)} {sub} must be a section "
                                f"[[[{sub}]]]")
                continue
            for key, value in list(plugin[sub].items()):
                if key in plugin:
                    problems.append(f"{path}: {section_label(section_path)}: key '{key}' is set both "
                                    f"in the section and in [[[{sub}]]]")
                    continue
                plugin[key] = value
                origins[(section_path, key)] = section_path + (sub,)
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
    def _validation_problems(path, config, result, spec_lines, origins) -> List[str]:
        problems = []
        for section_path, key, error in flatten_errors(config, result):
            section_path = tuple(section_path)
            shown = origins.get((section_path, key), section_path)
            check = config
            for name in section_path:
                check = check[name]
            spec = check.configspec.get(key, "") if key else ""
            expected = _describe_check(str(spec)) if not isinstance(spec, Section) else ""
            where = f"{path}: {section_label(shown)}"
            if key is None:
                problems.append(f"{where}: section is missing")
            elif isinstance(spec, Section):
                if section_path + (key,) not in (("listeners",), ("buffers",)):   # reported already
                    problems.append(f"{path}: {key} must be a section {section_label(section_path + (key,))}, "
                                    "not a key")
            elif error is False:
                problems.append(f"{where}: key '{key}' is required (expected {expected})")
            else:
                value = config
                for name in section_path:
                    value = value[name]
                reason = str(error) if isinstance(error, ValidateError) and str(error) else "invalid value"
                problems.append(f"{where} {key} = {value.get(key)!r}: {reason.rstrip('.')} "
                                f"(expected {expected})")
        return problems

    @staticmethod
    def _extra_value_warnings(path, config, classes, origins) -> List[str]:
        warnings = []
        for section_path, name in get_extra_values(config):
            section_path = tuple(section_path)
            if len(section_path) == 0 and name in ("listeners", "buffers", "gateway"):
                continue
            if len(section_path) == 2 and section_path[0] in PLUGIN_KINDS \
                    and section_path not in [(k, n) for (k, n) in classes]:
                continue  # a plugin whose type is unknown: its error is reported already
            shown = origins.get((section_path, name), section_path)
            where = f"{path}: {section_label(shown)}" if shown else f"{path}:"
            warnings.append(f"{where}: '{name}' is not a known setting and is ignored (a typo?)")
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


def _claim_conflicts(path: str, gateway: dict, plugins: dict, origins) -> List[str]:
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
        shown, other_shown = origins.get((where, key), where), origins.get((other[0], other[1]), other[0])
        if claim[0] == "device":
            problems.append(f"{path}: {section_label(shown)} {key} = {claim[1]}: the same device as "
                            f"{section_label(other_shown)} {other[1]}; a serial port has one reader")
        else:
            problems.append(f"{path}: {section_label(shown)} {key} = {claim[2]}: "
                            f"{host_port(*claim[1:])} overlaps {section_label(other_shown)} {other[1]} "
                            f"({host_port(*other[2][1:])}): one port cannot be listened on twice")
    for bind_key in ("status_bind", "web_bind"):
        if not is_host(gateway.get(bind_key) or "0.0.0.0"):
            problems.append(f"{path}: [gateway] {bind_key} = {gateway[bind_key]}: not an IP address "
                            "nor a host name (e.g. 127.0.0.1, or 0.0.0.0 for every interface)")
    return problems
