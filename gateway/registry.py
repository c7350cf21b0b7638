"""Maps config ``type`` names to plugin classes, importing a plugin only when it is used."""

import importlib
from typing import Dict, Mapping, Optional

from gateway.confighelp import suggest


class Registry:
    """Plugin classes by config ``type`` name, with the original gateway's class names as aliases.

    ``types`` maps our names to ``"module:Class"``; ``aliases`` maps other accepted names
    (``OemGatewaySocketListener``) to ours. Lookups ignore case.
    """

    def __init__(self, kind: str, types: Mapping[str, str], aliases: Optional[Mapping[str, str]] = None):
        self.kind = kind
        self._types: Dict[str, str] = dict(types)
        self._by_lower: Dict[str, str] = {name.lower(): name for name in self._types}
        for alias, target in (aliases or {}).items():
            self._by_lower[alias.lower()] = target

    def canonical(self, type_name: str) -> str:
        """Our name for ``type_name`` (an alias or any capitalisation); LookupError if unknown."""
        try:
            return self._by_lower[type_name.strip().lower()]
        except KeyError:
            known = ", ".join(sorted(self._types))
            raise LookupError(f"unknown {self.kind} type {type_name!r} (known types: {known})") from None

    def resolve(self, type_name: str) -> type:
        """The plugin class for ``type_name``."""
        module_name, _, class_name = self._types[self.canonical(type_name)].partition(":")
        return getattr(importlib.import_module(module_name), class_name)

    def names(self):
        return sorted(self._types)

    def suggest(self, type_name: str) -> Optional[str]:
        """Our name for the type ``type_name`` is probably a misspelling of (``sockte``,
        ``OemGatewaySocketListner``), or None."""
        guess = suggest(type_name, list(self._types) + list(self._by_lower))
        return None if guess is None else self._by_lower[guess.lower()]
