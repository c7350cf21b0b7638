"""Listeners read frames from the outside world: one file per type, registered here.

The config's ``type`` picks the class; the original oem_gateway's class names are accepted as
aliases, so old config files keep working.
"""

from gateway.registry import Registry

LISTENERS = Registry(
    "listener",
    types={
        "socket": "listeners.socket:SocketListener",
        "serial": "listeners.serial:SerialListener",
        "rfm2pi": "listeners.rfm2pi:RFM2PiListener",
        "rfm12pi": "listeners.rfm2pi:RFM12PiListener",
        "rfm69": "listeners.rfm69:Rfm69Listener",
        "oemserial": "listeners.oem_serial:OemSerialListener",
        "mqtt": "listeners.mqtt:MqttListener",
        "pulse": "listeners.pulse:PulseListener",
        "gpio": "listeners.gpio:GpioListener",
        "ds18b20": "listeners.ds18b20:DS18B20Listener",
    },
    aliases={
        "OemGatewaySocketListener": "socket",
        "OemGatewaySerialListener": "serial",
        # The original gateway read RFM2Pi boards at 9600 baud: its type names mean that board.
        "OemGatewayRFM2PiListener": "rfm12pi",
        "OemGatewayRFM2PiListenerRepeater": "rfm12pi",
    },
)
