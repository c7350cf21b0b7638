"""Sample configs made from the code: each plugin's ``SAMPLE`` (and each ``[gateway]`` part's)
rendered with the defaults of its ``SPEC``, one section for ``oemgateway --sample-config TYPE``,
the whole shipped ``oemgateway.conf`` for ``oemgateway --sample-config`` (which a test keeps
equal to the file, so the file cannot drift from the code).

A ``SAMPLE`` is written at one indent (any), in the shipped file's words:

* comment lines (``# ...``) and blank lines are copied;
* a line that is only a key (``max_clients``) becomes ``# max_clients = 64``: the setting
  commented out, showing its default from the ``SPEC`` (written there and nowhere else);
* ``key = value`` sets the key in the sample (a value the user is expected to change);
* in a plugin's sample, the line ``[[...]]`` stands for the section's header and its ``type``:
  the lines above it introduce the section, the lines below are its body.

A base class may have ``SAMPLE_COMMON``: comment text on the settings all its subclasses have,
shown once, before the first section of such a type.
"""

import ast
import re
import textwrap
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from gateway.plugin import Plugin
from gateway.registry import Registry

HEADER = "[[...]]"
INDENT = "    "
_BARE_KEY = re.compile(r"^[a-z_][a-z0-9_]*$")
_DEFAULT = re.compile(r"default=(?:'([^']*)'|\"([^\"]*)\"|list\(\)|list\(([^)]+)\)|([^,)]+))")

FILE_HEADER = """\
# OEM Gateway configuration.
#
# Every setting is listed here once, with its default value. A line starting with '#' is a
# comment; the settings that are commented out show their default and may be left out.
# The gateway notices when this file is saved (or gets SIGHUP) and applies the changes live:
# added listeners/buffers start, removed ones close, changed settings apply, and readings
# still queued in a buffer are kept. A removed buffer gets shutdown_timeout seconds to deliver
# what it holds; the rest is dropped, counted as 'removed' (also for a buffer that is gone from
# the file at the next start). A file that no longer validates is reported in the log and
# ignored; check an edit first with:  oemgateway --config-file THIS_FILE --check
#
# Relative paths are relative to the folder of this file.
# Config files of the original oem_gateway (2013) work unchanged: their [[[init_settings]]]
# and [[[runtime_settings]]] sub-sections and Oem... type names are understood. So does an
# emonhub.conf ([hub], [interfacers], [nodes]): see docs/emonhub.md; to move over for good,
#   oemgateway --convert-emonhub /etc/emonhub/emonhub.conf > oemgateway.conf
# This file is what  oemgateway --sample-config  prints; one type's section alone:
#   oemgateway --sample-config TYPE     (e.g. mqtt, influxdb, serial, rfm2pi)
"""

LISTENERS_INTRO = """\
# Listeners read frames: lines of  NodeID val1 val2 ...  (node 0-255 or a name of
# letters, digits, _ and -; values integers or decimals). Any number of listeners, each
# in its own [[name]] section with a 'type'.
"""

BUFFERS_INTRO = """\
# Buffers send frames on. Each has its own queue and thread: a slow or unreachable server
# never delays reading, nor the other buffers.
"""

# The shipped file: (section name, type, set up) per listener and buffer, in order. The ones
# set up need no server and no hardware (the README's first command runs this file).
SHIPPED_LISTENERS: Sequence[Tuple[str, str, bool]] = (
    ("socket", "socket", True),
    ("usb", "serial", False),
    ("radio", "rfm2pi", False),
    ("emontx", "oemserial", False),
    ("spi", "rfm69", False),
    ("broker", "mqtt", False),
    ("temperatures", "ds18b20", False),
    ("gas", "pulse", False),
    ("digital", "gpio", False),
)
SHIPPED_BUFFERS: Sequence[Tuple[str, str, bool]] = (
    ("file", "file", True),
    ("emoncms", "emoncms", True),
    ("mqtt", "mqtt", False),
    ("influxdb", "influxdb", False),
    ("webhook", "webhook", False),
)


def spec_defaults(spec: str) -> Dict[str, Optional[str]]:
    """``{key: its default as written in the config}`` of configspec lines; None for a default
    the code works out (``default=None``)."""
    out: Dict[str, Optional[str]] = {}
    for line in spec.splitlines():
        key, sep, check = line.partition("=")
        if not sep or line.strip().startswith("["):
            continue
        match = _DEFAULT.search(check)
        if match is None:
            out[key.strip()] = None
            continue
        quoted, double, listed, bare = match.groups()
        if listed is not None:
            out[key.strip()] = ", ".join(f'"{item}"' if re.search(r'[#,"\s]', item) else item
                                         for item in ast.literal_eval(f"({listed},)"))
            continue
        value = quoted if quoted is not None else double if double is not None else bare
        out[key.strip()] = None if value == "None" else ("" if value is None else value.strip())
    return out


def render(sample: str, defaults: Dict[str, Optional[str]], indent: str) -> List[str]:
    """The lines of ``sample`` (flush left), each bare key as its commented-out default."""
    lines = []
    for line in textwrap.dedent(sample).strip("\n").splitlines():
        if _BARE_KEY.match(line):
            if defaults.get(line) is None:
                raise ValueError(f"sample line {line!r}: no such key with a default in the spec")
            line = f"# {line} = {defaults[line]}".rstrip()
        lines.append(indent + line if line else "")
    return lines


def commented_out(lines: Iterable[str]) -> List[str]:
    """A section's lines as the shipped file shows one that is not set up: ``# `` after the
    first indent, so that removing it sets the section up."""
    return [line[:len(INDENT)] + "# " + line[len(INDENT):] if line else "" for line in lines]


def section(cls: type, name: str, type_name: str, set_up: bool = True) -> List[str]:
    """One plugin's section: its introduction, ``[[name]]``, ``type`` and its body."""
    sample = next((k.__dict__["SAMPLE"] for k in cls.__mro__ if k.__dict__.get("SAMPLE")), None)
    if sample is None:
        raise ValueError(f"{cls.__name__} has no SAMPLE: document its settings there")
    intro, header, body = textwrap.dedent(sample).strip("\n").partition(HEADER)
    if not header:
        raise ValueError(f"{cls.__name__}.SAMPLE has no {HEADER} line")
    defaults = spec_defaults(cls.settings_spec())
    lines = [f"{INDENT}[[{name}]]", f"{INDENT * 2}type = {type_name}"] + render(body, defaults, INDENT * 2)
    return render(intro, defaults, INDENT) + (lines if set_up else commented_out(lines))


def common_blocks(cls: type) -> List[Tuple[type, str]]:
    """``(base class, its SAMPLE_COMMON)`` for the bases of ``cls`` that have one, outermost first."""
    return [(klass, klass.__dict__["SAMPLE_COMMON"]) for klass in reversed(cls.__mro__)
            if klass.__dict__.get("SAMPLE_COMMON")]


def plugin_sample(registry: Registry, type_name: str) -> str:
    """What ``oemgateway --sample-config TYPE`` prints: the settings its kind of plugin shares,
    then a section of that type, set up, to paste under ``[listeners]`` or ``[buffers]``."""
    type_name = registry.canonical(type_name)
    cls = registry.resolve(type_name)
    lines = [f"# Paste under [{registry.kind}s]:", ""]
    for _, text in common_blocks(cls):
        lines += render(text, {}, INDENT) + [""]
    return "\n".join(lines + section(cls, type_name, type_name)) + "\n"


def _plugins(title: str, intro: str, registry: Registry, shipped: Sequence[Tuple[str, str, bool]]) -> List[str]:
    """``[listeners]`` or ``[buffers]`` with the shipped sections. The settings every plugin of
    the kind has come before the title; those a family shares, before its first section."""
    head, body, shown = intro.strip("\n").splitlines(), [""], set()
    for name, type_name, set_up in shipped:
        cls = registry.resolve(type_name)
        for klass, text in common_blocks(cls):
            if klass not in shown:
                shown.add(klass)
                if Plugin in klass.__bases__:
                    head += render(text, {}, "")
                else:
                    body += render(text, {}, INDENT) + [""]
        body += section(cls, name, type_name, set_up) + [""]
    return head + [title] + body


def shipped_config(listeners: Registry, buffers: Registry, gateway_parts: Sequence, nodes_sample: str) -> str:
    """The whole shipped ``oemgateway.conf``."""
    lines = FILE_HEADER.splitlines() + ["", "[gateway]"]
    for index, part in enumerate(gateway_parts):
        if index:
            lines.append("")
        lines += render(part.sample, spec_defaults(part.spec), INDENT)
    lines += [""] + _plugins("[listeners]", LISTENERS_INTRO, listeners, SHIPPED_LISTENERS)
    lines += _plugins("[buffers]", BUFFERS_INTRO, buffers, SHIPPED_BUFFERS)
    lines += nodes_sample.strip("\n").splitlines()
    return "\n".join(lines).rstrip("\n") + "\n"
