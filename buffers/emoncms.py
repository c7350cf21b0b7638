"""Emoncms buffer: posts readings to emoncms' input API (local or remote).

A reading is posted on its own (``input/post``) as soon as it arrives when nothing is
queued; readings that piled up (an outage, a burst) go out together through ``input/bulk``,
so a day of backlog drains in seconds. Every reading carries the time it was received.
The API key travels in the ``Authorization: Bearer`` header, never in a URL.
"""

import json
import re
import time
from typing import List, Optional

import requests

from buffers.base import AuthError, RejectedError, TooLargeError, TransientError
from buffers.formats import compact_json
from buffers.http import HttpBuffer, retry_after
from gateway.frame import Frame

EMONCMS_FLOAT_MAX = 3.4e38  # emoncms stores values in a MySQL FLOAT; larger ones crash it
_API_KEY = re.compile(r"[0-9a-fA-F]{32}")


class EmoncmsBuffer(HttpBuffer):
    SPEC = """
    url = string(default='http://localhost/emoncms')
    apikey = string(default='')
    protocol = string(default=None)
    domain = string(default=None)
    path = string(default=None)
    """
    SECRETS = ("apikey",)

    @classmethod
    def check_settings(cls, settings: dict) -> List[str]:
        problems = []
        if not cls.base_url(settings).startswith(("http://", "https://")):
            problems.append(f"url = {cls.base_url(settings)!r}: expected an http:// or https:// URL")
        return problems

    @classmethod
    def warn_settings(cls, settings: dict) -> List[str]:
        warnings = super().warn_settings(settings)
        key = settings["apikey"]
        if key and not _API_KEY.fullmatch(key):
            warnings.append("apikey: not 32 hexadecimal characters, emoncms will refuse it "
                            "(copy the Write API Key from emoncms: Setup > My Account)")
        return warnings

    @classmethod
    def modernise(cls, settings: dict, renamed) -> dict:
        """The original ``protocol``/``domain``/``path`` keys as the ``url`` they make."""
        modern = {k: v for k, v in settings.items() if k not in ("protocol", "domain", "path")}
        modern["url"] = cls.base_url(settings)
        return modern

    @staticmethod
    def base_url(settings: dict) -> str:
        """The emoncms URL; the original ``protocol``/``domain``/``path`` keys still work."""
        if settings.get("domain"):
            url = (settings.get("protocol") or "http://") + settings["domain"] + (settings.get("path") or "")
        else:
            url = settings["url"]
        return url.rstrip("/")

    # -- plugin hooks -------------------------------------------------------------------
    def configure(self) -> None:
        super().configure()
        self.url = self.base_url(self.settings)
        self.session.headers["Authorization"] = "Bearer " + self.settings["apikey"]

    def inactive_reason(self) -> Optional[str]:
        if not self.settings["apikey"]:
            return "no apikey set (fill in your emoncms write API key to start sending)"
        return None

    def check(self, frame: Frame) -> Optional[str]:
        for value in frame.values:
            if abs(value) > EMONCMS_FLOAT_MAX:
                return f"value {value} is beyond what emoncms can store"
        return None

    def send(self, batch: List[Frame]) -> None:
        synchronised = self.clock.synchronised()
        if len(batch) == 1 and synchronised:
            frame = batch[0]
            form = {"node": str(frame.node), "time": str(int(frame.time)),
                    "fulljson": compact_json(frame.named_values())}
            self._post("input/post", form, expected='{"success": true}')
            return
        rows = [bulk_row(f) for f in batch]
        form = {"data": compact_json(rows)}
        if synchronised:
            form["time"] = "0"   # each row's time is absolute: reference 0 + row time
        else:
            # Our clock is wrong by an unknown amount: emoncms re-bases the rows on its own
            # clock (row time - sentat + its now), which cancels our error.
            form["sentat"] = str(int(time.time()))
        self._post("input/bulk", form, expected="ok")

    # -- the wire -----------------------------------------------------------------------
    def _post(self, endpoint: str, form: dict, expected: str) -> None:
        self._judge(self.post(f"{self.url}/{endpoint}", data=form), expected)

    def _judge(self, reply: requests.Response, expected: str) -> None:
        """Raise unless emoncms' own success reply came back (see research on its input API)."""
        body = reply.text.strip()
        status = reply.status_code
        if status == 200:
            if body == expected:
                return
            if not body:
                raise AuthError("emoncms answered with an empty body and stored nothing: "
                                "is the apikey a read-only key?")
            message = _failure_message(body)
            if message is not None:
                raise RejectedError(f"emoncms refused: {message}")
            raise TransientError(f"unexpected answer from emoncms: {body[:120]!r}")
        if status == 401:
            raise AuthError("emoncms refused the API key (401 Invalid API key)")
        if status in (413, 414):
            raise TooLargeError(f"emoncms answered {status}: request too large")
        if status in (403, 404):
            raise AuthError(f"emoncms answered {status} for {reply.url.split('?')[0]}: check the url")
        if 300 <= status < 400:
            self.judge(reply, "emoncms")   # raises: a redirect to put in url
        raise TransientError(f"emoncms answered {status} {reply.reason}", retry_after(reply))


def _failure_message(body: str) -> Optional[str]:
    """emoncms' ``{"success": false, "message": ...}`` message, or None for any other body."""
    try:
        reply = json.loads(body)
    except ValueError:
        return None
    if isinstance(reply, dict) and reply.get("success") is False:
        return str(reply.get("message", "no reason given"))
    return None


def bulk_row(frame: Frame) -> list:
    """A reading as an ``input/bulk`` row: ``[time, node, v1, v2, ...]`` when its values are
    positional (emoncms names them 1, 2, ... itself: the shortest form to build and send),
    ``[time, node, {name: value, ...}]`` when they have names; ``rssi`` as a named input."""
    if frame.names is None:
        row = [int(frame.time), frame.node, *frame.values]
        if frame.rssi is not None:
            row.append({"rssi": frame.rssi})
        return row
    return [int(frame.time), frame.node, frame.named_values()]
