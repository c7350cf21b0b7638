"""The gateway's web surface, served by one HTTP server (``server``):

- ``status``: the one status snapshot (taken on the event loop's thread) behind ``/status``,
  ``/metrics`` and ``oemgateway --status``;
- ``page``, ``auth``, ``configedit``: the web page (login, sessions, CSRF, the JSON API) and its
  config editor; ``static/``: the page itself (HTML, JS, CSS, no build step);
- ``httpd``: the bounded HTTP server under both.

Only its settings are declared here: a gateway with neither address set loads none of the rest.
"""

from gateway.settings import GatewaySettings

# The [gateway] keys of the web surface (part of GATEWAY_SPEC). The two ports are two addresses
# of one server: each serves only its own routes. web_password_hash is a secret.
WEB_SPEC = """
status_port = integer(min=0, max=65535, default=0)
status_bind = string(default='127.0.0.1')
web_port = integer(min=0, max=65535, default=0)
web_bind = string(default='127.0.0.1')
web_password_hash = string(default='')
"""

WEB_SETTINGS = GatewaySettings(WEB_SPEC, sample="""
# Serve the gateway's status as JSON on http://<status_bind>:<status_port>/status and as
# Prometheus metrics on /metrics (0 = off). `oemgateway --status` prints it.
status_port
# Address /status and /metrics listen on; 0.0.0.0 opens them to the network. With the
# web page on too, one server listens on both ports; each port serves only its own.
status_bind

# The gateway's own web page on http://<web_bind>:<web_port>/ (0 = off): live status,
# node values, the log, and the config (forms and the whole file, checked before saving,
# applied at once, the previous file kept as oemgateway.conf.bak).
web_port
# Address the page listens on; 0.0.0.0 opens it to the network (put a TLS proxy in front).
web_bind
# The page's password, as a salted hash: run  oemgateway --hash-password  and paste what
# it prints. Empty: nobody can log in.
web_password_hash
""", restart=("status_port", "status_bind", "web_port", "web_bind"))
"""The web surface's part of ``[gateway]`` (``gateway.settings``)."""
