"""The web page as a browser uses it: a password, a login, requests with the session cookie
and the CSRF token; and the config that serves it."""

import json
import urllib.error
import urllib.request

from gateway.web.auth import hash_password
from tests.support.configs import listener_config
from tests.support.proclog import WAIT

PASSWORD = "correct horse"
PASSWORD_HASH = hash_password(PASSWORD, iterations=1000)   # fast for tests; the default is slow on purpose


class Browser:
    """Requests with a cookie jar and the CSRF token, as the page makes them."""

    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"
        self.cookie = None
        self.csrf = None

    def request(self, method, path, body=None, csrf=True):
        headers = {"Content-Type": "application/json"}
        if self.cookie:
            headers["Cookie"] = self.cookie
        if csrf and self.csrf:
            headers["X-CSRF-Token"] = self.csrf
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=WAIT) as reply:
                return reply.status, reply.headers, reply.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read()

    def json(self, method, path, body=None, csrf=True):
        code, _, data = self.request(method, path, body, csrf)
        return code, json.loads(data)

    def login(self, password=PASSWORD):
        code, headers, data = self.request("POST", "/api/login", {"password": password})
        if code == 200:
            self.cookie = headers["Set-Cookie"].split(";", 1)[0]
            self.csrf = json.loads(data)["csrf"]
        return code, headers


def web_config(emoncms, port, web_port, password_hash=PASSWORD_HASH):
    """A socket listener, the test emoncms, node 10 named, the page on ``web_port``."""
    indent = "\n    "
    return listener_config(
        emoncms, indent.join(("[[tcp]]", "type = socket", f"port = {port}")),
        extra=indent.join(("[nodes]", "[[10]]", "nodename = house", "names = power, voltage", "units = W, V")),
        gateway=indent.join(("clock = trusted", f"web_port = {web_port}", f"web_password_hash = {password_hash}")))
