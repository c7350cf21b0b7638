"""What listeners and buffers have in common: a name, settings declared as a configspec."""

import logging
import re
from typing import Dict, Iterable, List, Mapping

_PATH_CHECK = re.compile(r"^\s*([\w.-]+)\s*=\s*path\(")


def path_keys(spec: str) -> List[str]:
    """The keys of configspec lines checked as ``path(...)``: settings that name a file."""
    return [m.group(1) for m in map(_PATH_CHECK.match, spec.splitlines()) if m]


class Plugin:
    """A configured listener or buffer.

    A subclass declares its settings once, as configspec lines in ``SPEC`` (with defaults);
    ``SECRETS`` names the settings that must never be shown or logged.
    """

    KIND = "plugin"
    SPEC = ""
    SECRETS: Iterable[str] = ()
    RENAMED: Mapping[str, str] = {}
    """Settings of the original oem_gateway (2013) under their old names: ``{"port_nb": "port"}``.
    The loader reads each as today's setting (both written with different values: an error);
    messages name the one written."""

    def __init__(self, name: str, settings: dict):
        self.name = name
        self.settings = dict(settings)
        self.log = logging.getLogger(f"oemgateway.{self.KIND}.{name}")

    @classmethod
    def settings_spec(cls) -> str:
        """The configspec lines for this plugin's section, base classes' lines included.

        A subclass may declare a base class's setting again (to give it another default):
        its line replaces the base's.
        """
        lines: Dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            for line in (klass.__dict__.get("SPEC") or "").splitlines():
                key = line.split("=", 1)[0].strip()
                if key:
                    lines.pop(key, None)
                    lines[key] = line.strip()
        return "\n".join(lines.values())

    @classmethod
    def file_settings(cls, settings: dict) -> Dict[str, str]:
        """The settings that name a file or folder the plugin reads or writes (key -> the
        path), which the web page may only point at allowed folders. By default every
        ``path(...)`` setting; a plugin whose files hide in other settings says so here."""
        return {key: settings[key] for key in path_keys(cls.settings_spec()) if settings.get(key)}

    @classmethod
    def modernise(cls, settings: dict, renamed: Mapping[str, str]) -> dict:
        """The validated settings in today's terms: what the plugin runs with and what
        ``--show-settings`` shows. ``renamed`` maps today's name to the old one the file used
        (``{"port": "port_nb"}``). A plugin whose old settings mean more than a new name (an
        address implied, three keys making one URL) says so here, and only here: the rest of
        its code knows today's settings alone."""
        return dict(settings)

    @classmethod
    def check_settings(cls, settings: dict) -> List[str]:
        """Problems configspec cannot express (one message per problem, naming the key)."""
        return []

    @classmethod
    def warn_settings(cls, settings: dict) -> List[str]:
        """Settings that work but are probably not what the user meant (one message each)."""
        return []

    def __str__(self) -> str:
        return f"{self.KIND} '{self.name}'"
