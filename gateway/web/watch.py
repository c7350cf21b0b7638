"""The page's Watch view in words: what each destination is doing ("delivering", "behind by
3 min, catching up: about 40 s left", "emoncms refuses the API key: fix it in Set up"), and what
to do about a delivery error.

The catch-up estimate needs rates, so the page's status requests keep the previous counts
(``DeliveryRates``): nothing is counted or timed while no page is open.
"""

import re
import time
from typing import Dict, Optional, Tuple

BEHIND_AFTER = 30.0   # seconds: a reading waiting longer than this means the destination is behind

# (what the error says, what to do), first match wins; the error's own text is shown too.
ADVICE = (
    (r"refused the API key|Invalid API key|empty body and stored nothing",
     "the API key is wrong or read-only: copy the Write API Key from emoncms (Setup > My Account) "
     "into this destination's apikey in Set up"),
    (r"answered 40[134]\b.*check the url|answered 404|redirected to",
     "the URL does not lead to emoncms' input API: check the url in Set up (e.g. "
     "http://localhost/emoncms or https://emoncms.org)"),
    (r"no such host", "the server's name is not known here: check the spelling of the url/host, or "
                      "this machine's DNS and network"),
    (r"connection refused", "nothing listens at that address: is the server running, and are the "
                            "host and port right?"),
    (r"no route to host|network is unreachable|timed out|no answer from",
     "the server does not answer: is it on, and can this machine reach it (network, firewall)?"),
    (r"certificate.*not trusted|TLS", "the server's TLS certificate is not trusted: set ca_file to its "
                                      "CA's PEM file, or fix the certificate"),
    (r"refused the connection: (?:bad user name or password|not authori[sz]ed)",
     "the broker refuses the user name or password: check them in Set up"),
    (r"cannot write|permission denied|no space", "the gateway cannot write there: check the folder "
                                                 "exists, its permissions, and free space"),
    (r"answered 5\d\d", "the server has trouble of its own: the readings wait and are sent when it "
                        "recovers; look at its log if this lasts"),
)


def advice(error: Optional[str]) -> Optional[str]:
    """What to do about a delivery error, or None when there is nothing better than waiting."""
    if not error:
        return None
    for pattern, what in ADVICE:
        if re.search(pattern, error, re.IGNORECASE):
            return what
    return None


def duration(seconds: float) -> str:
    """``45 s``, ``3 min``, ``2.5 h``, ``3 days``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


class DeliveryRates:
    """Readings delivered and accepted per second, per buffer, between two status requests."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._previous: Dict[str, Tuple[float, int, int]] = {}
        self._rates: Dict[str, Tuple[float, float]] = {}

    def update(self, buffers: Dict[str, dict]) -> Dict[str, Tuple[float, float]]:
        """``{buffer: (delivered per s, accepted per s)}`` since the last call at least 1 s ago
        (the previous rates in between)."""
        now = self._clock()
        for name, b in buffers.items():
            before = self._previous.get(name)
            if before is None or now - before[0] >= 1.0:
                if before is not None:
                    elapsed = now - before[0]
                    self._rates[name] = ((b["delivered"] - before[1]) / elapsed, (b["accepted"] - before[2]) / elapsed)
                self._previous[name] = (now, b["delivered"], b["accepted"])
        for gone in set(self._previous) - set(buffers):
            self._previous.pop(gone, None)
            self._rates.pop(gone, None)
        return {name: self._rates[name] for name in buffers if name in self._rates}


def destination_state(b: dict, rates: Optional[Tuple[float, float]]) -> dict:
    """A buffer's status entry in words: ``{"level": ok|behind|error|off, "words", "advice",
    "catch_up_s"}``."""
    queued, lag = b["queued"], b.get("oldest_queued_age_s") or 0
    if b["state"] == "inactive":
        return {"level": "off", "words": f"not sending: {b['inactive_reason'] or 'inactive'}",
                "advice": "fill in what is missing in Set up" if b.get("inactive_reason") and "apikey" in
                b["inactive_reason"] else None, "catch_up_s": None}
    if b["state"] in ("refused", "retrying"):
        what = advice(b.get("last_error"))
        if b["state"] == "refused":
            words = "refused by the destination: fix the setting, the readings wait"
        else:
            words = "cannot deliver: retrying"
        if queued:
            words += f"; {queued} readings wait (the oldest for {duration(lag)}), none is lost"
        return {"level": "error", "words": words, "advice": what, "catch_up_s": None}
    if queued and lag > BEHIND_AFTER:
        delivering, arriving = rates or (0.0, 0.0)
        gaining = delivering - arriving
        if gaining > 0:
            left = queued / gaining
            return {"level": "behind", "words": f"behind by {duration(lag)}, catching up: about "
                                                f"{duration(left)} left", "advice": None, "catch_up_s": round(left)}
        return {"level": "behind", "words": f"behind by {duration(lag)}, not catching up yet "
                                            f"({queued} readings wait)", "advice": None, "catch_up_s": None}
    if not b["delivered"] and not queued:
        return {"level": "ok", "words": "ready: nothing to send yet", "advice": None, "catch_up_s": None}
    return {"level": "ok", "words": "delivering", "advice": None, "catch_up_s": None}
