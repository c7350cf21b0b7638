"""The repeater port of an RFM2Pi listener: a TCP port whose lines go out on the radio.

The original ``OemGatewayRFM2PiListenerRepeater``'s port, kept working: each line a client
sends is either an RF12demo command (``12,34,56,s`` broadcasts three bytes, ``4b`` changes the
band), checked before it reaches the board, or a frame for a node (``10 100 200``: values for
node 10, packed as ``[nodes] [[10]] [[[tx]]]`` says). Accepting connections and splitting lines
is the socket listener's code; this class only says what a line means.
"""

from listeners.socket import SocketListener


class RepeaterServer(SocketListener):
    KIND = "repeater"

    def __init__(self, owner, bind, port: int, port_nb):
        """``owner`` is the radio listener: its loop carries the server, its ``repeat(line)``
        sends each line (raising ValueError, with the reason, for a line it refuses)."""
        settings = dict(SocketListener.ACCESS_DEFAULTS, bind=bind, port=port, port_nb=port_nb,
                        max_line=1024, nodelistonly=False)
        super().__init__(owner.name, settings, owner.loop, emit=None, nodes=owner.nodes)
        self.owner = owner

    def handle_text(self, text: str) -> None:
        try:
            self.owner.repeat(text)
        except ValueError as exc:
            self.reject(str(exc), text)
