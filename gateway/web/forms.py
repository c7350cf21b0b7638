"""What the page's Set up forms are built from: each plugin type's settings, read from its
``SPEC`` (the configspec the loader validates with) and its sample config.

For every setting: its kind of input (number, yes/no, one of a list, text, list), default,
bounds, allowed values, whether it is a secret, and its description. The description and the
starting values of a new section come from the plugin's sample config: ``cls.sample_config()``
or ``cls.SAMPLE`` when the plugin has one, else the plugin's section in the shipped
``oemgateway.conf`` (its comments are the settings' documentation). The forms never hold a
rule of their own: validation is the loader's (``ConfigEditor.check``).
"""

import os
import re
import sys
from typing import Dict, List, Optional

from validate import Validator

from gateway.config import is_secret
from gateway.registry import Registry

NUMBER_CHECKS = {"integer": "integer", "float": "number", "port": "integer"}
LIST_CHECKS = ("list", "force_list", "string_list", "int_list", "float_list", "tuple", "mixed_list")
_HEADER = re.compile(r"^(\s*)(#\s?)?(\s*)\[\[([^\]]+)\]\]\s*$")
_TOP_HEADER = re.compile(r"^\s*#?\s*\[([^\[\]]+)\]\s*$")
_SETTING = re.compile(r"^\s*(#\s*)?([A-Za-z_][\w.-]*)\s*=\s*(.*?)\s*$")
_VALIDATOR = Validator()


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


def plugin_form(cls: type, type_name: str, sample: Optional[str]) -> dict:
    """The form of one plugin type: its settings in the order of its sample (then of its spec),
    and the sample section new sections start from."""
    spec_lines = [line.strip() for line in cls.settings_spec().splitlines() if "=" in line]
    checks = {line.split("=", 1)[0].strip(): line.split("=", 1)[1].strip() for line in spec_lines}
    sample = sample or _sample_from_spec(type_name, checks)
    described = descriptions(sample, checks)
    shown = re.findall(r"^\s*([A-Za-z_][\w.-]*)\s*=", sample, re.MULTILINE)
    order = [k for k in shown if k in checks] + [k for k in checks if k not in shown]
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
            own = getattr(cls, "sample_config", None)
            sample = own() if callable(own) else getattr(cls, "SAMPLE", None) or samples.get(type_name)
            out[kind][type_name] = plugin_form(cls, type_name, sample)
    return out
