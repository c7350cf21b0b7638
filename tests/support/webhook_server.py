"""A fake webhook receiver for the tests: parses and validates what the gateway POSTs.

It accepts what a strict receiver of the documented body would: ``Content-Type:
application/json``, a JSON array of readings, each an object with exactly ``node`` (an id
0-255 or a name), ``time`` (Unix seconds) and ``values`` (an object of finite numbers), and
optionally ``site`` (a non-empty text: a gateway of a fleet). A body
that is not that gets 400. With ``token`` set, a request without ``Authorization: Bearer
<token>`` gets 401. ``refuse_value``: a batch holding a reading with that value gets 422
(the receiver's validation refuses it) and nothing of the batch is stored.
"""

import json
import math
import numbers
from dataclasses import dataclass
from typing import Dict, List, Optional, Union

from tests.support.http_server import FakeHttpServer, Request, Response

TOKEN = "webhook-secret-token-42"


@dataclass(frozen=True)
class Reading:
    node: Union[int, str]
    time: float
    values: Dict[str, float]
    site: Optional[str] = None


class FakeWebhook(FakeHttpServer):
    name = "fake webhook"

    def __init__(self, token: Optional[str] = TOKEN, refuse_value: Optional[float] = None,
                 path: str = "/hook"):
        super().__init__()
        self.token = token
        self.refuse_value = refuse_value
        self.path = path
        self.readings: List[Reading] = []
        self.batches: List[int] = []    # readings per stored request

    @property
    def hook_url(self) -> str:
        return self.url + self.path

    def wait_for_readings(self, count: int) -> List[Reading]:
        self.wait_until(lambda: len(self.readings) >= count, f"{count} readings")
        with self._cond:
            return list(self.readings)

    def handle(self, request: Request) -> Response:
        if request.path != self.path:
            return Response(404, b'{"error":"no such hook"}')
        if request.method != "POST":
            return Response(405, b'{"error":"POST only"}')
        if self.token and request.headers.get("authorization") != "Bearer " + self.token:
            return Response(401, b'{"error":"missing or wrong token"}')
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return Response(415, b'{"error":"expected application/json"}')
        try:
            readings = [_reading(item) for item in json.loads(request.body.decode("utf-8"))]
        except (ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
            return Response(400, json.dumps({"error": f"bad body: {exc}"}).encode())
        for reading in readings:
            if self.refuse_value is not None and self.refuse_value in reading.values.values():
                return Response(422, json.dumps({"message": f"value {self.refuse_value} of node "
                                                            f"{reading.node} is not plausible"}).encode())
        self.readings.extend(readings)
        self.batches.append(len(readings))
        self.notify()
        return Response(200, b'{"ok":true}')


def _reading(item) -> Reading:
    if not isinstance(item, dict) or set(item) - {"site"} != {"node", "time", "values"}:
        raise ValueError(f"a reading is an object with node, time and values (and site): {item!r}")
    site = item.get("site")
    if site is not None and not (isinstance(site, str) and site):
        raise ValueError(f"site {site!r}")
    node, when, values = item["node"], item["time"], item["values"]
    if isinstance(node, bool) or not (isinstance(node, int) and 0 <= node <= 255
                                      or isinstance(node, str) and node):
        raise ValueError(f"node {node!r}")
    if isinstance(when, bool) or not isinstance(when, numbers.Real) or when < 0:
        raise ValueError(f"time {when!r}")
    if not isinstance(values, dict) or not values:
        raise ValueError(f"values {values!r}")
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ValueError(f"value {name}={value!r}")
    return Reading(node, float(when), dict(values), site)
