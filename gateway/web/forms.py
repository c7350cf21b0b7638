"""What the page's Set up forms are built from: each plugin type's settings, read from its
``SPEC`` (the configspec the loader validates with) and its ``SAMPLE`` (``gateway.sample``).

For every setting: its kind of input (number, yes/no, one of a list, text, list), default,
bounds, allowed values, whether it is a secret, and its description. The descriptions and the
starting values of a new section come from the plugin's sample section, rendered as
``oemgateway --sample-config TYPE`` renders it (the settings its kind shares are described in
its base classes' ``SAMPLE_COMMON``); a plugin without one falls back to its section in the
shipped ``oemgateway.conf``, then to its spec's defaults. The forms hold no rule of their own:
validation is the loader's (``ConfigEditor.check``).
"""

import os
import re
import sys
from typing import Dict, List, Optional, Tuple

from validate import Validator

from gateway.config import is_secret
from gateway.registry import Registry

NUMBER_CHECKS = {"integer": "integer", "float": "number", "port": "integer"}
LIST_CHECKS = ("list", "force_list", "string_list", "int_list", "float_list", "tuple", "mixed_list")
_HEADER = re.compile(r"^(\s*)(#\s?)?(\s*)\[\[([^\]]+)\]\]\s*$")
_TOP_HEADER = re.compile(r"^\s*#?\s*\[([^\[\]]+)\]\s*$")
_SETTING = re.compile(r"^\s*(#\s*)?([A-Za-z_][\w.-]*)\s*=\s*(.*?)\s*$")
_VALIDATOR = Validator()
_COMMON_SETTING = re.compile(r"^\s*#\s+([a-z_][a-z0-9_]*)\s*=\s?(.*?)(?:\s{2,}(.*))?$")
_COMMON_MORE = re.compile(r"^\s*#\s{6,}(\S.*)$")


def shipped_config() -> str:
    """The shipped ``oemgateway.conf`` (beside the package in a checkout, or installed under
    ``share/oemgateway``), or "" if there is none."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for candidate in (os.path.join(here, "oemgateway.conf"),
                      os.path.join(sys.prefix, "share", "oemgateway", "oemgateway.conf")):
        try:
            with open(candidate, encoding="utf-8") as f:
                return f.read()
        except OSError:
            continue
    return ""


def sample_sections(text: str, kind: str) -> Dict[str, str]:
    """The sections of ``[kind]`` in a sample config, commented out or not, by their ``type``:
    type -> the section's text, uncommented (its settings' own comments kept)."""
    found: Dict[str, str] = {}
    top = None
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        header = _HEADER.match(line)
        if not header and _TOP_HEADER.match(line) and not line.strip().startswith("# "):
            top = _TOP_HEADER.match(line).group(1).strip()
        if not header or top != kind:
            index += 1
            continue
        commented = bool(header.group(2))
        block = [line]
        index += 1
        while index < len(lines) and not _HEADER.match(lines[index]) and not (
                _TOP_HEADER.match(lines[index]) and not lines[index].strip().startswith("# ")):
            if not lines[index].strip() or (commented and not lines[index].lstrip().startswith("#")):
                break
            block.append(lines[index])
            index += 1
        section = "\n".join(_uncomment(block) if commented else block)
        type_line = re.search(r"^\s*type\s*=\s*(\S+)", section, re.MULTILINE)
        if type_line and type_line.group(1) not in found:
            found[type_line.group(1)] = section + "\n"
    return found


def _uncomment(block: List[str]) -> List[str]:
    """Lines commented out as a block (``    # [[usb]]``, ``    #     type = serial``) as they
    read uncommented."""
    out = []
    for line in block:
        match = re.match(r"^(\s*)#\s?(.*)$", line)
        out.append(match.group(1) + match.group(2) if match else line)
    return out


def descriptions(sample: str, keys) -> Dict[str, str]:
    """Each setting's description in a sample section: the comment lines just above its line
    (``key = value``, or ``# key = value`` for one shown at its default)."""
    found: Dict[str, str] = {}
    comment: List[str] = []
    for line in sample.splitlines():
        setting = _SETTING.match(line)
        if setting and setting.group(2) in keys:
            found.setdefault(setting.group(2), " ".join(comment))
            comment = []
        elif line.strip().startswith("#"):
            comment.append(line.strip().lstrip("#").strip())
        else:
            comment = []
    return found


def common_descriptions(text: str) -> Dict[str, str]:
    """Descriptions from a ``SAMPLE_COMMON`` block: ``#   key = default   what it does``, the
    description going on over the lines below it."""
    found: Dict[str, str] = {}
    key = None
    for line in text.splitlines():
        setting = _COMMON_SETTING.match(line)
        more = _COMMON_MORE.match(line)
        if setting and not more:
            key = setting.group(1)
            found[key] = (setting.group(3) or "").strip()
        elif more and key:
            found[key] = f"{found[key]} {more.group(1).strip()}".strip()
        else:
            key = None
    return found


def _own_sample(cls: type, type_name: str) -> Optional[Tuple[str, Dict[str, str]]]:
    """The plugin's sample section and the descriptions of its kind's shared settings, or None
    if it has no ``SAMPLE``."""
    try:
        from gateway import sample
    except ImportError:   # a gateway without sample configs made from the code
        return None
    try:
        text = "\n".join(sample.section(cls, type_name, type_name)) + "\n"
    except ValueError:
        return None
    shared: Dict[str, str] = {}
    for _, block in sample.common_blocks(cls):
        shared.update(common_descriptions(block))
    return text, shared


def field(key: str, check: str, secret: bool, description: str) -> dict:
    """One setting as the page's form shows it."""
    try:
        name, args, kwargs, default = _VALIDATOR._parse_with_caching(check)   # noqa: SLF001
    except Exception:   # noqa: BLE001 - a custom check the validator does not parse
        name, args, kwargs, default = check.split("(", 1)[0], [], {}, None
    out = {"key": key, "check": name, "input": "text", "default": default, "secret": secret,
           "description": description}
    if name in NUMBER_CHECKS:
        out["input"] = "number"
        out["step"] = "1" if NUMBER_CHECKS[name] == "integer" else "any"
        for bound in ("min", "max"):
            if kwargs.get(bound) is not None:
                out[bound] = kwargs[bound]
    elif name == "boolean":
        out["input"] = "choice"
        out["choices"] = ["True", "False"]
    elif name == "option":
        out["input"] = "choice"
        out["choices"] = list(args)
    elif name in LIST_CHECKS:
        out["input"] = "list"
    if isinstance(default, list):
        out["default"] = ", ".join(str(v) for v in default)
    elif default in ("None", None):
        out["default"] = None
    return out


def plugin_form(cls: type, type_name: str, sample: Optional[str], shared: Optional[Dict[str, str]] = None) -> dict:
    """The form of one plugin type: its settings in the order of its sample (then of its spec),
    and the sample section new sections start from. ``shared``: descriptions of the settings
    every plugin of its kind has."""
    spec_lines = [line.strip() for line in cls.settings_spec().splitlines() if "=" in line]
    checks = {line.split("=", 1)[0].strip(): line.split("=", 1)[1].strip() for line in spec_lines}
    sample = sample or _sample_from_spec(type_name, checks)
    described = dict(shared or {}, **{k: v for k, v in descriptions(sample, checks).items() if v})
    shown = re.findall(r"^\s*([A-Za-z_][\w.-]*)\s*=", sample, re.MULTILINE)   # set in the sample
    mentioned = re.findall(r"^\s*(?:#\s*)?([A-Za-z_][\w.-]*)\s*=", sample, re.MULTILINE)
    order = [k for k in mentioned if k in checks] + [k for k in checks if k not in mentioned]
    starting = {m.group(1): m.group(2) for m in re.finditer(r"^\s*([A-Za-z_][\w.-]*)\s*=[ \t]*(.*?)\s*$",
                                                              sample, re.MULTILINE) if m.group(1) in checks}
    fields = [dict(field(key, checks[key], is_secret(key, cls), described.get(key, "")), advanced=key not in shown)
              for key in dict.fromkeys(order)]
    doc = (cls.__doc__ or sys.modules[cls.__module__].__doc__ or "").strip().split("\n\n")[0]
    return {"type": type_name, "summary": " ".join(doc.split()), "fields": fields,
            "start": starting, "sample": sample}


def _sample_from_spec(type_name: str, checks: Dict[str, str]) -> str:
    """A sample section made of the spec's defaults, for a plugin that ships none."""
    lines = [f"[[{type_name}]]", f"    type = {type_name}"]
    for key, check in checks.items():
        default = re.search(r"default=([^,)]*(?:\([^)]*\))?)", check)
        if default:
            lines.append(f"    # {key} = {default.group(1).strip(chr(39) + chr(34))}")
    return "\n".join(lines) + "\n"


def forms(registries: Dict[str, Registry], sample_text: Optional[str] = None) -> dict:
    """Every plugin type's form, by kind then type name."""
    text = shipped_config() if sample_text is None else sample_text
    out: Dict[str, Dict[str, dict]] = {}
    for kind, registry in registries.items():
        samples = sample_sections(text, kind)
        out[kind] = {}
        for type_name in registry.names():
            try:
                cls = registry.resolve(type_name)
            except Exception:   # noqa: BLE001 - an optional library missing: the type cannot be set up here
                continue
            own = _own_sample(cls, type_name)
            sample, shared = own if own is not None else (samples.get(type_name), {})
            out[kind][type_name] = plugin_form(cls, type_name, sample, shared)
    return out
