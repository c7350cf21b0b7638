"""What the MQTT buffer and the MQTT listener share: how to reach and log in to a broker.

The settings (``BROKER_SPEC``), their checks and warnings, the TLS context, and the words for
a broker's refusal are here once; each plugin keeps its own topics and its own client.
"""

import ssl
from typing import List

BROKER_SPEC = """
host = string(default='localhost')
port = integer(min=1, max=65535, default=None)
username = string(default='')
password = string(default='')
client_id = string(default='')
keepalive = integer(min=5, max=65535, default=60)
tls = boolean(default=False)
ca_file = path(default='')
certfile = path(default='')
keyfile = path(default='')
verify_tls = boolean(default=True)
"""
BROKER_SECRETS = ("password",)
BROKER_SAMPLE = """\
    host = localhost
    # 1883, or 8883 with tls = True.
    # port = 1883
    username
    # Never logged nor shown.
    password
    # TLS: encrypt, and check the broker's certificate against the system's CAs (or
    # ca_file, a private CA's PEM file). certfile, keyfile: a client certificate, for a
    # broker that asks for one. verify_tls = False skips the check (and says what it costs).
    tls
    ca_file
    certfile
    keyfile
    verify_tls
    # Default: oemgateway-<hostname>-<this section's name>. Keep it stable with a
    # persistent session: the broker keeps the session under it.
    client_id
    keepalive
"""
"""The broker settings' part of an MQTT listener's or buffer's SAMPLE (``gateway.sample``)."""
LOOPBACK = ("localhost", "127.0.0.1", "::1")
# CONNACK refusals that no retry will cure until the settings change
REFUSALS = {"Bad user name or password": "wrong username or password",
            "Not authorized": "not authorised (check username and password)",
            "Client identifier not valid": "client_id refused",
            "Unsupported protocol version": "MQTT 3.1.1 not supported"}


class TlsFilesError(ValueError):
    """ca_file, certfile or keyfile cannot be loaded; the message says why."""


def broker_port(settings: dict) -> int:
    return settings["port"] or (8883 if settings["tls"] else 1883)


def broker_url(settings: dict) -> str:
    """``mqtt://host:port`` or ``mqtts://...``, for the log (no credentials)."""
    return f"{'mqtts' if settings['tls'] else 'mqtt'}://{settings['host']}:{broker_port(settings)}"


def broker_problems(settings: dict) -> List[str]:
    problems = []
    if (settings["certfile"] or settings["keyfile"]) and not settings["tls"]:
        problems.append("certfile/keyfile need tls = True")
    if settings["keyfile"] and not settings["certfile"]:
        problems.append("keyfile needs certfile (the client certificate)")
    return problems


def broker_warnings(settings: dict) -> List[str]:
    """The warnings every MQTT client's settings (a listener's, a buffer's) may deserve."""
    warnings = []
    if settings["tls"] and not settings["verify_tls"]:
        warnings.append("verify_tls = False: the broker's certificate is not checked, so anyone "
                        "on the network path can read or alter what is sent (use ca_file to "
                        "trust a private CA instead)")
    if not settings["tls"] and settings["ca_file"]:
        warnings.append("ca_file is only used with tls = True")
    if settings["password"] and not settings["tls"] and settings["host"] not in LOOPBACK:
        warnings.append(f"the password travels in clear to {settings['host']}: set tls = True "
                        "if the broker offers it")
    if settings["persistent_session"] and settings["qos"] == 0:
        warnings.append("persistent_session = True with qos = 0: the broker keeps nothing "
                        "for a QoS 0 subscription while the gateway is away")
    return warnings


def tls_context(settings: dict) -> ssl.SSLContext:
    """The client's TLS context: the system's CAs or ``ca_file``, a client certificate when
    given; raises TlsFilesError."""
    try:
        context = ssl.create_default_context(cafile=settings["ca_file"] or None)
        if settings["certfile"]:
            context.load_cert_chain(settings["certfile"], settings["keyfile"] or None)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise TlsFilesError(f"cannot load the TLS files (ca_file, certfile, keyfile): {exc}") from None
    if not settings["verify_tls"]:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
