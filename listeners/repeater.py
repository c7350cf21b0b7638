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

    def __init__(self, owner, bind, port: int, port_nb):
        """``owner`` is the radio listener: its loop carries the server, its ``repeat(line)``
        sends each line (raising ValueError, with the reason, for a line it refuses)."""
        settings = dict(SocketListener.ACCESS_DEFAULTS, bind=bind, port=port, port_nb=port_nb,
                        max_line=1024, nodelistonly=False)
        super().__init__(owner.name, settings, owner.loop, emit=None, nodes=owner.nodes)
        self.owner = owner

    @staticmethod
    def _address(radio: dict) -> Optional[Tuple[str, str, int]]:
        """``(key, host, port)`` of the repeater a radio listener's settings ask for, or None."""
        port = radio.get("repeater_port") or radio.get("port_nb")
        if not port:
            return None
        host, port = SocketListener.listen_address(
            {"bind": radio.get("repeater_bind"), "port": port, "port_nb": radio.get("port_nb")})
        return ("port_nb" if radio.get("port_nb") else "repeater_port"), host, port

    @classmethod
    def claims_of(cls, radio: dict) -> List[Tuple[str, tuple]]:
        """The TCP port the repeater of a radio listener with these settings needs."""
        address = cls._address(radio)
        return [(address[0], ("tcp", address[1], address[2]))] if address else []

    @classmethod
    def warnings_of(cls, radio: dict) -> List[str]:
        """Anyone on the network could make the radio transmit: say so."""
        address = cls._address(radio)
        if address is None:
            return []
        return exposure_warning(address[1], address[2], "repeater_bind",
                                radio.get("repeater_bind") is None, restrictable=False)

    def handle_text(self, text: str) -> None:
        try:
            self.owner.repeat(text)
        except ValueError as exc:
            self.reject(str(exc), text)
