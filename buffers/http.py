"""What the buffers that POST over HTTP share: one kept-alive client built from the common
settings, transport failures turned into DeliveryErrors, and what HTTP status codes mean.

A plugin subclasses ``HttpBuffer``, calls ``self.post(...)`` and hands the reply to
``self.judge(...)`` (or judges a service's own success body itself, as emoncms needs):

======================================  =====================================================
the server answers                      meaning for the buffer
======================================  =====================================================
2xx                                     delivered
401, 403, 404, 405, 407, 3xx            refused: wrong credentials or URL (AuthError: keep
414, 431                                everything, log once, retry slowly); a URL or headers
                                        too long do not get shorter with smaller batches
413                                     too large: send smaller batches (TooLargeError)
408, 425, 429, 5xx, no answer           try again with backoff, no sooner than ``Retry-After``
other 4xx (400, 422, ...)               the batch holds a reading it will never take
                                        (RejectedError: the base splits it to find it)
======================================  =====================================================

Redirects are not followed: following one would turn a redirected POST into a GET, and the GET's
200 would look like a delivery. A 3xx is reported with its target, to be put in ``url``.
"""

import errno
import re
import socket
import sys
import time
import urllib.parse
from typing import List, Optional

from buffers.base import AuthError, Buffer, RejectedError, TooLargeError, TransientError
from buffers.httpclient import HttpClient, Reply
from gateway import __version__
from gateway.logs import mask_url_credentials

USER_AGENT = f"oemgateway/{__version__}"
AUTH_STATUSES = frozenset({401, 403, 404, 405, 407, 414, 431})
TOO_LARGE_STATUSES = frozenset({413})
RETRY_STATUSES = frozenset({408, 425, 429})


class HttpBuffer(Buffer):
    """A buffer that delivers with HTTP requests through one kept-alive client
    (``buffers.httpclient``; ``self.session.headers`` go with every request)."""

    SPEC = """
    timeout = float(min=0.1, max=3600, default=10)
    verify_tls = boolean(default=True)
    ca_file = path(default='')
    """

    @staticmethod
    def url_problems(url: str) -> List[str]:
        """The problem of a ``url`` setting that is not an http:// or https:// URL (none if it is)."""
        if url.startswith(("http://", "https://")):
            return []
        return [f"url = {url!r}: expected an http:// or https:// URL"]

    @classmethod
    def warn_settings(cls, settings: dict) -> List[str]:
        warnings = super().warn_settings(settings)
        if not settings["verify_tls"]:
            warnings.append("verify_tls = False: the server's certificate is not checked, so "
                            "anyone on the network path can read or alter what is sent "
                            "(use ca_file to trust a private CA instead)")
        return warnings

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.session = HttpClient(USER_AGENT)

    def configure(self) -> None:
        """Apply the settings to the session; subclasses add their headers after this."""
        self.session.verify = self.settings["ca_file"] or self.settings["verify_tls"]

    def close_transport(self) -> None:
        self.session.close()

    def post(self, url: str, **kwargs) -> Reply:
        """POST through the client; transport failures raise DeliveryErrors.

        A certificate that is not trusted is an AuthError (nothing gets through until the
        settings change); no answer in ``timeout`` seconds, a refused or cut connection are
        TransientErrors. ``url`` is shown in messages without its query string and credentials.
        """
        timeout = self.settings["timeout"]
        shown = mask_url_credentials(url.split("?", 1)[0])
        try:
            return self.session.post(url, timeout=timeout, **kwargs)
        except socket.timeout:
            raise TransientError(f"no answer from {shown} within {timeout:g} s") from None
        except OSError as exc:
            ssl = sys.modules.get("ssl")   # (imported only when a URL is https://)
            if ssl is not None and isinstance(exc, ssl.SSLError):
                raise AuthError(f"TLS certificate of {shown} not trusted: {short_error(exc)} "
                                f"(set ca_file to trust a private CA)") from None
            raise TransientError(connection_problem(exc, url)) from None

    def judge(self, reply: Reply, service: str, detail: str = "") -> None:
        """Return if ``reply`` says delivered (2xx), else raise the DeliveryError it means.

        ``service`` names the server in messages (``InfluxDB``); ``detail`` is what the
        server said about the failure, when the plugin knows how to read it.
        """
        status = reply.status_code
        if 200 <= status < 300:
            return
        said = f"{service} answered {status} {reply.reason or ''}".rstrip()
        if detail:
            said += f": {detail}"
        if 300 <= status < 400:
            target = mask_url_credentials(reply.headers.get("Location", "?"))
            raise AuthError(f"{said}: redirected to {target} (set url to the final address)")
        if status in AUTH_STATUSES:
            raise AuthError(f"{said} for {mask_url_credentials(reply.url.split('?')[0])}: "
                            f"check the url and credentials")
        if status in TOO_LARGE_STATUSES:
            raise TooLargeError(f"{said}: request too large")
        if status in RETRY_STATUSES or status >= 500:
            raise TransientError(said, retry_after(reply))
        if 400 <= status < 500:
            raise RejectedError(said)
        raise TransientError(f"unexpected answer: {said}")


def retry_after(reply: Reply) -> Optional[float]:
    """Seconds the server asked us to wait (``Retry-After``: seconds or an HTTP date), or None."""
    value = reply.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    import email.utils   # (only here: 1.3 MB of modules a daemon rarely needs)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def error_detail(reply: Reply, limit: int = 200) -> str:
    """What a server said in an error body: a JSON ``message``/``error`` field, else the text."""
    try:
        body = reply.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("message", "error", "detail"):
            if isinstance(body.get(key), str):
                return body[key][:limit]
    return " ".join(reply.text.split())[:limit]


def connection_problem(exc: Exception, url: str) -> str:
    """A failed connection in words: ``cannot connect to 127.0.0.1:9: connection refused``."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = "?"
    where = f"{parts.hostname or '?'}:{port}"
    cause = _root_os_error(exc)
    if isinstance(cause, socket.gaierror):
        return f"cannot connect to {where}: no such host ({(cause.strerror or str(cause)).lower()})"
    if cause is not None and (cause.strerror or cause.errno):
        return f"cannot connect to {where}: {(cause.strerror or errno.errorcode.get(cause.errno, '')).lower()}"
    if isinstance(exc, ConnectionError):
        return f"cannot connect to {where}: the connection was cut"
    return f"cannot send to {where}: {short_error(exc)}"


def _root_os_error(exc: BaseException) -> Optional[OSError]:
    """The operating system's error under ``exc`` (refused, reset, no route)."""
    seen, todo = set(), [exc]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, OSError) and (item.errno or isinstance(item, socket.gaierror)):
            return item
        todo += [getattr(item, "reason", None), item.__cause__, item.__context__]
        todo += [arg for arg in getattr(item, "args", ()) if isinstance(arg, BaseException)]
    return None


def short_error(exc: Exception) -> str:
    """The last, most specific part of an error's text."""
    text = str(exc)
    match = re.search(r"\(Caused by \w+\((?:<[^>]*>, )?'?(.*?)'?\)\)", text)
    return (match.group(1) if match else text)[:200]
