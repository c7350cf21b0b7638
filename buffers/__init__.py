"""Buffers deliver frames to destinations: one file per type, registered here.

Each buffer queues what it is given and sends it on its own thread, so a slow or dead
server never delays the listeners or the other buffers. The original oem_gateway's class
names are accepted as aliases.
"""

from gateway.registry import Registry

BUFFERS = Registry(
    "buffer",
    types={
        "emoncms": "buffers.emoncms:EmoncmsBuffer",
        "file": "buffers.file:FileBuffer",
        "mqtt": "buffers.mqtt:MqttBuffer",
        "influxdb": "buffers.influxdb:InfluxDBBuffer",
        "webhook": "buffers.webhook:WebhookBuffer",
    },
    aliases={
        "OemGatewayEmoncmsBuffer": "emoncms",
    },
)
