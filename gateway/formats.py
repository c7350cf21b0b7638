"""How readings are written as text by the buffers and the spool."""

import json
import re
from typing import Optional

from gateway.frame import Number



def _compact_json_encoder():
    """JSON without spaces, as ``json.JSONEncoder(separators=(",", ":")).encode`` writes it.

    ``JSONEncoder.encode`` builds a new C encoder (and a dict to detect cycles) on every call:
    half of what encoding one reading costs. Readings hold no cycles, so one C encoder is made
    once and reused (where the C accelerator is missing, the plain encoder is used)."""
    encoder = json.JSONEncoder(separators=(",", ":"))
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return encoder.encode
    chunks = make(None, encoder.default, json.encoder.encode_basestring_ascii, None, ":", ",",
                  False, False, True)

    def compact_json(value) -> str:
        return "".join(chunks(value, 0))
    return compact_json


compact_json = _compact_json_encoder()


def number_text(value: Number) -> str:
    """A value as text: ``230`` for an integer, ``241.2`` for a decimal (shortest exact form)."""
    return str(value) if isinstance(value, int) else repr(float(value))


def json_time(seconds: float) -> Number:
    """A reading's time for JSON: whole seconds as an integer, else to the millisecond."""
    return int(seconds) if seconds == int(seconds) else round(seconds, 3)


_SITE = re.compile(r"[A-Za-z0-9_.-]{1,64}", re.ASCII)


def site_problem(site: str) -> Optional[str]:
    """Why ``site`` cannot name a site (it becomes a topic level, an InfluxDB tag, a JSON
    field), or None."""
    site = site.strip()
    if site and not _SITE.fullmatch(site):
        return (f"site = {site!r}: expected up to 64 letters, digits, '_', '.' and '-' "
                f"(it is a topic level and a tag)")
    return None
