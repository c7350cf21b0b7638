"""What listeners and buffers have in common: a name, settings declared as a configspec."""

import logging
from typing import Dict, Iterable, List


class Plugin:
    """A configured listener or buffer.

    A subclass declares its settings once, as configspec lines in ``SPEC`` (with defaults);
    ``SECRETS`` names the settings that must never be shown or logged.
    """

    KIND = "plugin"
    SPEC = ""
    SECRETS: Iterable[str] = ()

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
    def check_settings(cls, settings: dict) -> List[str]:
        """Problems configspec cannot express (one message per problem, naming the key)."""
        return []

    @classmethod
    def warn_settings(cls, settings: dict) -> List[str]:
        """Settings that work but are probably not what the user meant (one message each)."""
        return []

    def __str__(self) -> str:
        return f"{self.KIND} '{self.name}'"
