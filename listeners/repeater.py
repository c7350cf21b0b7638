"""The repeater port of an RFM2Pi listener: a TCP port whose lines go out on the radio.

The original ``OemGatewayRFM2PiListenerRepeater``'s port, kept working: each line a client
sends is either an RF12demo command (``12,34,56,s`` broadcasts three bytes, ``4b`` changes the
band), checked before it reaches the board, or a frame for a node (``10 100 200``: values for
node 10, packed as ``[nodes] [[10]] [[[tx]]]`` says). Accepting connections and splitting lines
is the socket listener's code; this class only says what a line means.
"""

from typing import List, Optional, Tuple

from listeners.socket import SocketListener, exposure_warning


class RepeaterServer(SocketListener):
    KIND = "repeater"

    def __init__(self, owner, bind: str, port: int):
        """``owner`` is the radio listener: its loop carries the server, its ``repeat(line)``
        sends each line (raising ValueError, with the reason, for a line it refuses)."""
        settings = dict(SocketListener.ACCESS_DEFAULTS, bind=bind, port=port, max_line=1024,
                        nodelistonly=False)
        super().__init__(owner.name, settings, owner.loop, emit=None, nodes=owner.nodes)
        self.owner = owner

    @staticmethod
    def _address(radio: dict) -> Optional[Tuple[str, int]]:
        """``(host, port)`` of the repeater a radio listener's settings ask for, or None."""
        if not radio.get("repeater_port"):
            return None
        return SocketListener.listen_address({"bind": radio.get("repeater_bind"), "port": radio["repeater_port"]})

    @classmethod
    def claims_of(cls, radio: dict) -> List[Tuple[str, tuple]]:
        """The TCP port the repeater of a radio listener with these settings needs."""
        address = cls._address(radio)
        return [("repeater_port", ("tcp", *address))] if address else []

    @classmethod
    def warnings_of(cls, radio: dict) -> List[str]:
        """Anyone on the network could make the radio transmit: say so."""
        address = cls._address(radio)
        return exposure_warning(*address, "repeater_bind", restrictable=False) if address else []

    def handle_text(self, text: str) -> None:
        try:
            self.owner.repeat(text)
        except ValueError as exc:
            self.reject(str(exc), text)
