"""How readings are written as text by the buffers and the spool."""

import json

from gateway.frame import Number

# JSON without spaces. json.dumps with custom separators builds a new encoder on every call;
# one shared encoder is much faster on the paths every reading takes.
compact_json = json.JSONEncoder(separators=(",", ":")).encode


def number_text(value: Number) -> str:
    """A value as text: ``230`` for an integer, ``241.2`` for a decimal (shortest exact form)."""
    return str(value) if isinstance(value, int) else repr(float(value))


def json_time(seconds: float) -> Number:
    """A reading's time for JSON: whole seconds as an integer, else to the millisecond."""
    return int(seconds) if seconds == int(seconds) else round(seconds, 3)
