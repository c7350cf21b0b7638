"""Units of inputs that a listener knows and a frame does not carry."""

import threading
from typing import Dict, Mapping, Optional

from gateway.frame import Node


class UnitBook:
    """Units listeners declare for their nodes' inputs (a Modbus or M-Bus device preset knows
    them; a radio packet does not). Thread-safe: listeners declare from their threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self._units: Dict[Node, Dict[str, str]] = {}

    def declare(self, node: Node, units: Mapping[str, Optional[str]]) -> None:
        with self._lock:
            self._units.setdefault(node, {}).update({k: v for k, v in units.items() if v})

    def units(self, node: Node) -> Dict[str, str]:
        with self._lock:
            return dict(self._units.get(node, {}))
