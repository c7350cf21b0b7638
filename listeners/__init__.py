"""Listeners read frames from the outside world: one file per type, registered here.

The config's ``type`` picks the class; the original oem_gateway's class names are accepted as
aliases, so old config files keep working.
"""

from gateway.registry import Registry

LISTENERS = Registry(
    "listener",
    types={
        "socket": "listeners.socket:SocketListener",
    },
    aliases={
        "OemGatewaySocketListener": "socket",
    },
)
