"""InfluxDB buffer: writes readings as line-protocol points over HTTP.

``api = v2`` writes to ``/api/v2/write`` (InfluxDB 2.x, 3.x and Cloud: ``org``, ``bucket``,
``token``); ``api = v1`` to ``/write`` (InfluxDB 1.x: ``database``, ``retention_policy``,
``username``/``password``). Credentials travel in the ``Authorization`` header (``Token ...``,
or HTTP Basic for v1), never in the URL.

One point per reading, stamped with the time it was received (``precision=s``)::

    emon,node=emontx power1=230,power2=-12,vrms=241.2,rssi=-60 1712345678

The measurement is ``measurement`` (``emon``), the ``node`` tag is the node's name from
``[nodes]`` (else its id), and every value is a float field, so a value that is sometimes whole
never causes a field type conflict. With ``site`` set, every point also has a ``site`` tag
(``emon,node=emontx,site=school-12 ...``), so one bucket holds a fleet of gateways. Re-sending a point overwrites it with the same values,
so a batch sent twice (after a crash) is harmless.
"""

from typing import List, Optional

from gateway.formats import number_text, site_problem
from buffers.http import HttpBuffer, error_detail
from gateway.frame import Frame


class InfluxDBBuffer(HttpBuffer):
    SPEC = """
    url = string(default='http://localhost:8086')
    api = option('v2', 'v1', default='v2')
    org = string(default='')
    bucket = string(default='')
    token = string(default='')
    database = string(default='')
    retention_policy = string(default='')
    username = string(default='')
    password = string(default='')
    measurement = string(default='emon')
    site = string(default='')
    """
    SAMPLE = """
    # Writes readings to InfluxDB as line-protocol points, one per reading, every value a
    # float field, stamped with the time it was received:
    #     emon,node=emontx power1=230,vrms=241.2 1712345678
    [[...]]
    url = http://localhost:8086
    # v2: InfluxDB 2.x, 3.x and Cloud (org, bucket, token); v1: InfluxDB 1.x.
    api = v2
    org = home
    bucket = energy
    # An API token allowed to write to the bucket. Never logged nor shown.
    token =
    # With api = v1: the database, its retention policy (empty: its default), and a user
    # (sent as HTTP Basic authentication, never in the URL).
    database
    retention_policy
    username
    password
    measurement
    # A site tag on every point (emon,node=emontx,site=school-12 ...). Empty: none.
    site
    timeout
    verify_tls
    ca_file
    """
    SECRETS = ("token", "password")

    @classmethod
    def check_settings(cls, settings: dict) -> List[str]:
        problems = cls.url_problems(settings["url"])
        measurement = settings["measurement"]
        if not measurement or measurement.startswith("#") or any(c in measurement for c in "\r\n"):
            problems.append(f"measurement = {measurement!r}: expected a name (not starting with #)")
        problem = site_problem(settings["site"])
        if problem:
            problems.append(problem)
        return problems

    # -- plugin hooks -------------------------------------------------------------------
    def configure(self) -> None:
        super().configure()
        settings = self.settings
        base = settings["url"].rstrip("/")
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        self._auth = None
        if settings["api"] == "v2":
            self._write_url = f"{base}/api/v2/write"
            self._params = {"org": settings["org"], "bucket": settings["bucket"], "precision": "s"}
            self._headers["Authorization"] = "Token " + settings["token"]
        else:
            self._write_url = f"{base}/write"
            self._params = {"db": settings["database"], "precision": "s"}
            if settings["retention_policy"]:
                self._params["rp"] = settings["retention_policy"]
            if settings["username"]:
                self._auth = (settings["username"], settings["password"])

    def inactive_reason(self) -> Optional[str]:
        settings = self.settings
        if settings["api"] == "v2":
            missing = [key for key in ("org", "bucket", "token") if not settings[key]]
            if missing:
                return f"{' and '.join(missing)} not set (api = v2 needs org, bucket and token)"
        elif not settings["database"]:
            return "no database set (api = v1)"
        return None

    def send(self, batch: List[Frame]) -> None:
        measurement, site = self.settings["measurement"], self.settings["site"].strip()
        body = "\n".join(point(measurement, frame, site) for frame in batch).encode("utf-8")
        reply = self.post(self._write_url, params=self._params, data=body,
                          headers=self._headers, auth=self._auth)
        if not 200 <= reply.status_code < 300:
            self.judge(reply, "InfluxDB", error_detail(reply))


def point(measurement: str, frame: Frame, site: str = "") -> str:
    """One reading as a line-protocol point: ``measurement,node=<node>[,site=<site>] <fields>
    <seconds>`` (tags in key order, as InfluxDB prefers)."""
    # An integer written without the ``i`` suffix is a float to InfluxDB.
    fields = ",".join(f"{_escape(name, ' ,=')}={number_text(value)}"
                      for name, value in frame.named_values().items())
    tags = f"node={_escape(str(frame.node), ' ,=')}" + (f",site={site}" if site else "")
    return f"{_escape(measurement, ' ,')},{tags} {fields} {int(frame.time)}"


def _escape(text: str, special: str) -> str:
    """Backslash-escape ``special`` characters, and backslashes themselves (``\\\\`` is one)."""
    text = text.replace("\\", "\\\\")
    for char in special:
        text = text.replace(char, "\\" + char)
    return text
