"""What every radio listener that transmits shares, built on its own ``transmit(payload, dest)``:
values for a node packed as emonhub sends them, the repeater port's ``node v1 v2 ...`` lines,
and opening that port."""

from typing import Optional, Sequence

from gateway.frame import FrameError, Number, parse_values_line
from listeners.base import Transmitter
from listeners.repeater import RepeaterServer


class RadioTransmitter(Transmitter):
    """Mixed into a listener with ``transmit(payload, dest=0) -> bool``, ``nodes``, ``settings``
    (``repeater_port``, ``repeater_bind``) and ``log``."""

    repeater: Optional[RepeaterServer] = None

    def transmit(self, payload: Sequence[int], dest: int = 0) -> bool:
        raise NotImplementedError

    def send_frame(self, node: int, values: Sequence[Number]) -> bool:
        """Send values to ``node`` as emonhub does: a broadcast whose first byte is the node id,
        then the values packed as ``[nodes] [[node]] [[[tx]]]`` says (16-bit values without).
        Raises ValueError for values that do not fit."""
        if not isinstance(node, int) or not 0 <= node <= 255:
            raise ValueError(f"node {node!r} is not a radio node id (0-255)")
        return self.transmit(bytes([node]) + self.nodes.encode(node, values))

    def repeat_frame(self, text: str) -> bool:
        """Send a repeater line of the form ``node v1 v2 ...``; False if the line is not of that
        form (one word). ValueError, saying why, for a line of several words that is no frame."""
        if len(text.split()) < 2:
            return False
        try:
            node, values = parse_values_line(text)
        except FrameError as exc:
            raise ValueError(f"not a frame for a node ({exc})") from None
        self.send_frame(node, values)
        return True

    def open_repeater(self) -> None:
        """Open the repeater port if one is configured; a port that cannot be opened is logged,
        and the radio is read all the same."""
        port = self.settings["repeater_port"]
        if not port:
            return
        repeater = RepeaterServer(self, self.settings["repeater_bind"], port)
        try:
            repeater.open()
            self.repeater = repeater
        except OSError as exc:
            self.log.error("%s (the radio is read all the same)", exc)

    def close_repeater(self) -> None:
        if self.repeater is not None:
            self.repeater.close()
            self.repeater = None
