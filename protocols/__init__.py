"""What devices and servers say, without the I/O: frame parsers, telegram decoders, register
maps, meter presets, board firmware dialects, radio drivers and message builders. Listeners and
buffers use them; each module is tested on its own with real bytes."""
