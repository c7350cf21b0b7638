"""The gateway's web surface, served by one HTTP server (``server``):

- ``status``: the one status snapshot (taken on the event loop's thread) behind ``/status``,
  ``/metrics`` and ``oemgateway --status``;
- ``page``, ``auth``, ``configedit``: the web page (login, sessions, CSRF, the JSON API) and its
  config editor; ``static/``: the page itself (HTML, JS, CSS, no build step);
- ``httpd``: the bounded HTTP server under both.

Nothing is imported here: a gateway with neither address set loads none of it.
"""

# The [gateway] keys of the web surface, each with its default (part of GATEWAY_SPEC):
# status_port        /status (JSON) and /metrics (Prometheus text) on this port, no login;
#                    0 = off. `oemgateway --status` reads it.
# status_bind        the address /status and /metrics listen on (127.0.0.1: this machine only;
#                    0.0.0.0: the network).
# web_port           the web page and its API on this port, behind the login; 0 = off.
# web_bind           the address the page listens on (0.0.0.0: the network; put a TLS proxy
#                    in front).
# web_password_hash  the page's password as a salted hash (`oemgateway --hash-password`);
#                    empty: nobody can log in. A secret: never shown nor logged.
# The two ports are two addresses of one server: each serves only its own routes.
WEB_SPEC = """
status_port = integer(min=0, max=65535, default=0)
status_bind = string(default='127.0.0.1')
web_port = integer(min=0, max=65535, default=0)
web_bind = string(default='127.0.0.1')
web_password_hash = string(default='')
"""
