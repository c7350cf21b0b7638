"""Reading and validating ``oemgateway.conf`` with configobj's own validation.

The file has a ``[gateway]`` section and ``[listeners]`` / ``[buffers]`` sections holding one
sub-section per plugin, each with a ``type``. Settings of a plugin may sit directly in its
section or, as in the original oem_gateway, in ``[[[init_settings]]]`` and
``[[[runtime_settings]]]``; both are read the same way. Every problem is reported with the
file, the section path and the key.
"""

import os
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Tuple
from urllib.parse import unquote

from configobj import ConfigObj, ConfigObjError, ParseError, Section, flatten_errors, get_extra_values
from validate import ValidateError, Validator, VdtValueError

from gateway.logs import MASK, URL_USERINFO, Redactor, mask_url_credentials
from gateway.nodes import CHECKS as NODE_CHECKS, NODE_SPEC, NodeTable
from gateway.registry import Registry

GATEWAY_SPEC = """
loglevel = loglevel(default='INFO')
config_check_interval = float(min=0, default=2)
shutdown_timeout = float(min=0, default=5)
clock = option('auto', 'trusted', 'untrusted', default='auto')
log_levels = force_list(default=list())
log_max_mb = float(min=0.01, default=5)
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
        path = os.path.abspath(path)
        raw = self._parse(path)
        problems: List[str] = []
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

        return Validator({"path": path_check, "loglevel": loglevel_check,
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
            expected = _describe_check(str(check.configspec.get(key, ""))) if key else ""
            where = f"{path}: {section_label(shown)}"
            if key is None:
                problems.append(f"{where}: section is missing")
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


