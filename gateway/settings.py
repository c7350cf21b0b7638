"""The ``[gateway]`` section, declared in one place: each part of the daemon contributes its
settings as configspec lines (``spec``), their documentation for the shipped config
(``sample``, see ``gateway.sample``) and the keys it reads only at start (``restart``: a
change is applied at the next start, and the running gateway says so).

The parts here are the daemon's own; the web surface (``gateway.web.WEB_SETTINGS``) and the
spool (``SPOOL_SETTINGS``) declare theirs beside their code; ``gateway.config.CORE_PARTS`` and
the command line (``oemgateway.GATEWAY_PARTS``) put them together.
"""

from typing import Iterable, List, NamedTuple, Tuple


class GatewaySettings(NamedTuple):
    """One part's ``[gateway]`` settings."""

    spec: str
    sample: str
    restart: Tuple[str, ...] = ()


LOGGING = GatewaySettings(
    spec="""
loglevel = loglevel(default='INFO')
log_levels = force_list(default=list())
log_max_mb = float(min=0.01, max=1024, default=5)
log_backups = integer(min=0, max=100, default=1)
syslog = boolean(default=False)
""",
    sample="""
# DEBUG, INFO, WARNING, ERROR or CRITICAL.
loglevel = INFO
# Other levels for parts of the gateway, e.g.  log_levels = spool=DEBUG, listener.rfm=WARNING
# (the part is the logger name after "oemgateway." as shown in each log line). Libraries
# (urllib3, charset_normalizer, paho ...) log only warnings; name one to see more: urllib3=DEBUG.
log_levels
# With --logfile: rotate the file at this many MB, keeping this many old files.
log_max_mb
log_backups
# Also log to the local syslog (/dev/log).
syslog
""",
    restart=("log_max_mb", "log_backups", "syslog"),
)

RUNNING = GatewaySettings(
    spec="""
config_check_interval = float(min=0, max=3600, default=2)
shutdown_timeout = float(min=0, max=3600, default=5)
""",
    sample="""
# How often (seconds) to look whether this file changed; 0 = only on SIGHUP.
config_check_interval
# On SIGTERM/SIGINT, how long (seconds) buffers may keep delivering what they hold;
# what is still undelivered then is saved for the next start.
shutdown_timeout
""",
)

NODE_DECODING = GatewaySettings(
    spec="""
node_templates = boolean(default=False)
emonhub_values = boolean(default=False)
""",
    sample="""
# Decode radio nodes that have no [nodes] section with the built-in templates of
# OpenEnergyMonitor's hardware (emonTx4, emonTH, emonPi ...), as emonhub's autoconf does:
# node 17's emonTx4 packets become node emonTx4_17 with inputs MSG, Vrms, P1 ...
node_templates
# Values as emonhub makes them, so that an emonhub user's inputs and topics stay the same:
# whole numbers from text sources are integers (T1:300.00 gives 300), and a node whose
# first input is MSG also gets 'missed' (packets missed since the first message seen) and
# 'missedprc' (their percentage). On when an emonhub.conf is run.
emonhub_values
""",
)

CLOCK = GatewaySettings(
    spec="""
clock = option('auto', 'trusted', 'untrusted', default='auto')
""",
    sample="""
# Is this machine's clock right? Readings carry the time they were received.
# auto:      ask the kernel whether NTP has synchronised the clock. Until it has (a Pi
#            without a real-time clock boots with a stale one), emoncms is sent the
#            gateway's clock with each batch and re-bases the times on its own clock;
#            readings still queued when the clock is corrected are re-timed by the
#            correction.
# trusted:   always send our own times (a clock kept right without NTP, e.g. an RTC).
# untrusted: never trust our clock; always let emoncms re-base the times.
clock
""",
)

FILE_ROOTS = GatewaySettings(
    spec="""
file_roots = force_list(default=list())
""",
    sample="""
# A setting that names a file or folder (a file buffer's path, ca_file, certfile, keyfile,
# runtime_dir, state_dir, a spy:// com_port's file) can be set from the page only to a
# place under the gateway's data folder (where the spool keeps its disk tier, e.g.
# /var/lib/oemgateway) or under these folders. Only this file can change this list.
file_roots
""",
)


def spec_of(parts: Iterable[GatewaySettings]) -> str:
    """The configspec of ``[gateway]`` made of ``parts``."""
    return "".join(part.spec.lstrip("\n") for part in parts)


def restart_keys(parts: Iterable[GatewaySettings]) -> List[str]:
    """The keys of ``parts`` that take effect only at the next start."""
    return [key for part in parts for key in part.restart]
