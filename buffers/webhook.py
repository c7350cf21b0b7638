"""Webhook buffer: POSTs readings as JSON to any HTTP endpoint.

Each request carries a batch (up to ``batch_size`` readings, always a JSON array, oldest
first), each reading with the time it was received (Unix seconds, to the millisecond)::

    [{"node": "emontx", "time": 1712345678.123, "values": {"power1": 230, "rssi": -60}}]

``node`` is the node's name from ``[nodes]`` (else its id, a number). A batch may be sent
twice after a crash: a receiver that must not count a reading twice can key it on
``node`` + ``time``. With ``site`` set, each reading also has ``"site": "<site>"`` (after
``node``), so one endpoint can take a fleet of gateways. Headers (``headers``, e.g. ``Authorization: Bearer ...``) are secrets:
never logged nor shown.
"""

import json
import re
from typing import Dict, List, Optional

from gateway.formats import json_time, site_problem
from buffers.http import HttpBuffer, error_detail
from gateway.frame import Frame

# Headers whose values are credentials (Authorization, X-API-Key, Cookie, X-Auth-Token, ...)
_CREDENTIAL = re.compile(r"auth|key|token|secret|pass|cookie|signature|session", re.IGNORECASE)


class WebhookBuffer(HttpBuffer):
    SPEC = """
    url = string(default='')
    headers = force_list(default=list())
    site = string(default='')
    """
    SAMPLE = """
    # POSTs readings as JSON to any HTTP endpoint, oldest first, in arrays of
    #     {"node": "emontx", "time": 1712345678.123, "values": {"power1": 230, "vrms": 241.2}}
    [[...]]
    # Inactive until a URL is set.
    url =
    # Headers sent with every request, each "Name: value", e.g.
    #     "Authorization: Bearer <token>", "X-Site: home"
    # Never shown; the values of credential headers (Authorization, X-Api-Key, ...) are
    # never logged.
    headers
    # "site": "<site>" in every reading. Empty: none.
    site
    timeout
    verify_tls
    ca_file
    """
    SECRETS = ("headers",)

    @classmethod
    def check_settings(cls, settings: dict) -> List[str]:
        problems = cls.url_problems(settings["url"]) if settings["url"] else []
        for header in settings["headers"]:
            name, colon, _ = header.partition(":")
            if not colon or not name.strip() or any(c in header for c in "\r\n"):
                problems.append("headers: each header is 'Name: value' (e.g. "
                                "headers = \"Authorization: Bearer ...\", \"X-Site: home\")")
                break
        problem = site_problem(settings["site"])
        if problem:
            problems.append(problem)
        return problems

    @classmethod
    def secret_values(cls, settings: dict) -> List[str]:
        """What the log must never show: every header line, and the value (and its last word,
        the token of ``Bearer <token>``) of a header that carries credentials."""
        found = []
        for header in settings["headers"]:
            found.append(header)
            name, _, value = header.partition(":")
            if _CREDENTIAL.search(name) and value.strip():
                found += [value.strip(), value.split()[-1]]
        return found

    # -- plugin hooks -------------------------------------------------------------------
    def configure(self) -> None:
        super().configure()
        self._headers: Dict[str, str] = {"Content-Type": "application/json"}
        for header in self.settings["headers"]:
            name, _, value = header.partition(":")
            self._headers[name.strip()] = value.strip()

    def inactive_reason(self) -> Optional[str]:
        if not self.settings["url"]:
            return "no url set"
        return None

    def send(self, batch: List[Frame]) -> None:
        site = {"site": self.settings["site"].strip()} if self.settings["site"].strip() else {}
        body = json.dumps([{"node": frame.node, **site, "time": json_time(frame.time),
                            "values": frame.named_values()} for frame in batch],
                          separators=(",", ":"))
        reply = self.post(self.settings["url"], data=body.encode("utf-8"), headers=self._headers)
        if not 200 <= reply.status_code < 300:
            self.judge(reply, "the webhook", error_detail(reply))
