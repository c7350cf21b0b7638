#!/usr/bin/env python3
"""OEM Gateway: reads energy-monitor frames from listeners and forwards them through buffers.

Run ``oemgateway --help`` for the command line. This module wires the plugin registries, the
spool and the hub (``gateway.hub.Gateway``) together and runs the event loop that reads every
listener; each buffer has its own sender thread. The config file says which listeners and
buffers exist, and is re-read live on SIGHUP or when it changes.
"""

import argparse
import json
import logging
import os
import signal
import stat
import sys
import time
from typing import List, Optional

from gateway import __version__, missing_dependency

try:
    from buffers import BUFFERS
    from gateway.config import ConfigError, ConfigLoader, GatewayConfig
    from gateway.eventloop import EventLoop
    from gateway.hub import GATEWAY_PARTS, Gateway
    from gateway.logs import Redactor, apply_log_levels, error_text, plural, setup_logging
    from gateway.spool import SPOOL_SPEC, SpoolLockedError, build_spool
    from gateway.web.status import format_status, on_loop, snapshot
    from gateway.systemd import Notifier
    from listeners import LISTENERS
except ImportError as exc:   # started outside its virtual environment, as the 2013 gateway was
    if missing_dependency(exc) is None:
        raise
    print(missing_dependency(exc), file=sys.stderr)
    sys.exit(2)

SYSTEM_CONFIG = "/etc/oemgateway/oemgateway.conf"
EXIT_OK, EXIT_CONFIG, EXIT_RUNTIME = 0, 1, 2

log = logging.getLogger("oemgateway")


# -- command line -----------------------------------------------------------------------
def default_config_path() -> str:
    return SYSTEM_CONFIG if os.path.exists(SYSTEM_CONFIG) else "oemgateway.conf"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oemgateway",
        description="Forward readings from energy-monitoring hardware (RFM2Pi boards, serial "
                    "ports, a TCP socket) to emoncms and other servers, queueing them while a "
                    "server is unreachable.",
        epilog="Signals: SIGHUP re-reads the config (as does saving the file); SIGTERM/SIGINT "
               "stop after giving buffers [gateway] shutdown_timeout seconds to deliver.\n"
               "Exit codes: 0 ok, 1 config error, 2 runtime error.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", metavar="PATH",
                        help=f"the config file (default: {SYSTEM_CONFIG} if it exists, "
                             "else oemgateway.conf in the current folder)")
    parser.add_argument("--config-emoncms", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--logfile", metavar="PATH",
                        help="log to this file, rotated at 5 MB with one backup (default: stderr)")
    parser.add_argument("--show-settings", action="store_true",
                        help="print the effective settings (secrets masked) and exit")
    parser.add_argument("--check", action="store_true",
                        help="validate the config, print every problem, exit 0 if it is usable, 1 if not")
    parser.add_argument("--status", action="store_true",
                        help="show the running gateway's status (needs [gateway] status_port)")
    parser.add_argument("--convert-emonhub", metavar="FILE",
                        help="print FILE, an emonhub.conf, as an oemgateway.conf (comments kept where "
                             "they map) and exit; an emonhub.conf also runs as it is with --config-file")
    parser.add_argument("--hash-password", action="store_true",
                        help="read a password (asked twice on a terminal, else one line of stdin) and "
                             "print its salted hash for [gateway] web_password_hash")
    parser.add_argument("--sample-config", nargs="?", const="", metavar="TYPE",
                        help="print a sample section of a listener or buffer TYPE (both, if both have it), every setting "
                             "explained with its default; without TYPE, the whole shipped config")
    parser.add_argument("--version", action="version", version=f"OEM Gateway {__version__}")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.sample_config is not None:
        return print_sample_config(args.sample_config)
    if args.hash_password:
        from gateway.web.auth import read_password_hash
        return read_password_hash()
    if args.config_emoncms:
        print("oemgateway: --config-emoncms is no longer supported (emoncms' raspberrypi module "
              "that served the settings is gone); use --config-file", file=sys.stderr)
        return EXIT_CONFIG
    path = args.config_file or default_config_path()
    loader = ConfigLoader(LISTENERS, BUFFERS, SPOOL_SPEC)
    if args.convert_emonhub:
        from gateway.emonhub import convert_file
        return convert_file(args.convert_emonhub, loader)
    try:
        config = loader.load(path)
    except ImportError as exc:   # a plugin's package (imported when the config names it)
        print(missing_dependency(exc) or f"oemgateway: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    except ConfigError as exc:
        print(f"oemgateway: {exc.path}: {plural(len(exc.problems), 'problem')}; the gateway does not "
              f"{'start' if not args.check else 'start with this file'} until "
              f"{'it is' if len(exc.problems) == 1 else 'they are'} fixed:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        for warning in exc.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        return EXIT_CONFIG
    if args.check:
        for warning in config.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(f"oemgateway: config {config.path} is valid ({plural(len(config.listeners), 'listener')}, "
              f"{plural(len(config.buffers), 'buffer')})")
        return EXIT_OK
    if args.show_settings:
        print(json.dumps(config.masked(), indent=2, default=str))
        return EXIT_OK
    if args.status:
        return print_status(config)
    return run(config, loader, args.logfile)


def print_sample_config(type_name: str) -> int:
    from gateway.nodes import NODE_SAMPLE
    from gateway.sample import plugin_sample, shipped_config
    if not type_name:
        print(shipped_config(LISTENERS, BUFFERS, GATEWAY_PARTS, NODE_SAMPLE), end="")
        return EXIT_OK
    samples = []   # (a name may be a listener type and a buffer type: mqtt)
    for registry in (LISTENERS, BUFFERS):
        try:
            registry.canonical(type_name)
        except LookupError:
            continue
        samples.append(plugin_sample(registry, type_name))
    if samples:
        print("\n".join(samples), end="")
        return EXIT_OK
    known = ", ".join(LISTENERS.names() + BUFFERS.names())
    guess = LISTENERS.suggest(type_name) or BUFFERS.suggest(type_name)
    hint = f"; did you mean {guess!r}?" if guess else ""
    print(f"oemgateway: no listener or buffer type {type_name!r} (types: {known}){hint}", file=sys.stderr)
    return EXIT_CONFIG


def run(config: GatewayConfig, loader: ConfigLoader, logfile: Optional[str]) -> int:
    redactor = Redactor()
    redactor.set_secrets(config.secrets())
    try:
        setup_logging(redactor, logfile, int(config.gateway["log_max_mb"] * 1024 * 1024),
                      config.gateway["log_backups"], config.gateway["syslog"])
    except OSError as exc:
        print(f"oemgateway: cannot open the log file: {error_text(exc)}", file=sys.stderr)
        return EXIT_RUNTIME
    apply_log_levels(config.gateway["loglevel"], config.gateway["log_levels"])   # (problems: said below)
    log.info("OEM Gateway %s starting (pid %d) with config %s", __version__, os.getpid(), config.path)
    for warning in config.warnings:
        log.warning("%s", warning)
    warn_if_readable_by_others(config)
    log.debug("effective settings: %s", json.dumps(config.masked(), default=str))
    try:
        spool = build_spool(config.gateway)
        spool.open(config.buffers)
    except (OSError, SpoolLockedError) as exc:
        log.error("cannot open the spool: %s", error_text(exc))
        return EXIT_RUNTIME
    loop = EventLoop()
    gateway = Gateway(loop, loader, redactor, spool)
    systemd = Notifier()
    started = time.monotonic()

    def stop(signame):
        log.info("%s received: stopping", signame)
        systemd.stopping()
        loop.stop()

    def reload():
        systemd.reloading()
        gateway.reload("SIGHUP")
        systemd.ready(gateway.summary())

    loop.add_signal_handler(signal.SIGTERM, lambda: stop("SIGTERM"))
    loop.add_signal_handler(signal.SIGINT, lambda: stop("SIGINT"))
    loop.add_signal_handler(signal.SIGHUP, reload)
    gateway.on_state_change = lambda: systemd.notify(f"STATUS={gateway.summary()}")
    gateway.start(config)
    if not gateway.listeners:
        log.warning("no listener is running: nothing will be received")
    servers = start_web_services(config, loader, gateway, loop, redactor, started)
    if systemd.watchdog_interval:
        ping_watchdog(loop, systemd)
    systemd.ready(gateway.summary())
    not_running = ", ".join(f"'{name}'" for name in gateway.failed)
    log.info("ready: %s, %s%s", plural(len(gateway.listeners), "listener"), plural(len(gateway.buffers), "buffer"),
             f"; not running: listener {not_running} (see the error above; it is tried again in the "
             "background)" if not_running else "")
    try:
        loop.run()
    finally:
        for server in servers:
            server.close()
        lost = gateway.shutdown()
        loop.close()
    log.info("stopped%s", f" ({plural(lost, 'reading')} kept for the next start)" if lost else "")
    return EXIT_OK


def print_status(config: GatewayConfig) -> int:
    """``--status``: ask the running gateway, print what it says for a person."""
    port = config.gateway["status_port"]
    if not port:
        print(f"oemgateway: set [gateway] status_port in {config.path} to see the status",
              file=sys.stderr)
        return EXIT_CONFIG
    host = config.gateway["status_bind"]
    host = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
    url = f"http://{host}:{port}/status" if ":" not in host else f"http://[{host}]:{port}/status"
    import urllib.request   # only this command needs an HTTP client: keep it out of the daemon
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            status = json.load(reply)
    except (OSError, ValueError) as exc:
        print(f"oemgateway: no answer from {url}: {error_text(exc)} (is the gateway running?)", file=sys.stderr)
        return EXIT_RUNTIME
    print(format_status(status))
    return EXIT_OK


def warn_if_readable_by_others(config: GatewayConfig) -> None:
    """A config holding secrets (API keys, passwords) should not be readable by every user."""
    try:
        mode = os.stat(config.path).st_mode
    except OSError:
        return
    if mode & stat.S_IROTH and config.secrets():
        log.warning("%s holds secrets and every user of this machine can read it: "
                    "chmod o-r %s", config.path, config.path)


def ping_watchdog(loop: EventLoop, systemd: Notifier) -> None:
    """Tell systemd the loop is alive, every half watchdog period, from the loop itself."""
    systemd.watchdog()
    loop.call_later(systemd.watchdog_interval, lambda: ping_watchdog(loop, systemd))


def start_web_services(config: GatewayConfig, loader: ConfigLoader, gateway: Gateway, loop: EventLoop,
                       redactor: Redactor, started: float) -> List:
    """The status endpoints and the web page the config asks for, on one HTTP server; what it
    returns is closed at the stop. Both read the hub only through snapshots taken on the loop
    thread."""
    def take_snapshot():
        return on_loop(loop, lambda: snapshot(gateway, __version__, started, redactor.redact))

    def page():
        from gateway.web.page import page_app   # only a gateway with the page on pays for it
        # The page may name files only in the gateway's data folder (where the spool keeps its
        # disk tier) or [gateway] file_roots, never in the spool's own folders.
        spool = gateway.spool
        folders = {tier.name: getattr(tier.files, "folder", None) for tier in (spool.hot, spool.cold)
                   if tier is not None}
        data_folder = os.path.dirname(folders["cold"]) if folders.get("cold") else None
        from gateway.web.history import InputHistory
        history = InputHistory()   # the inputs' last 24 h, kept from now on, page open or not
        gateway.nodes.on_decoded = history.record_frame
        return page_app(config, loader, take_snapshot, redactor, lambda: gateway.config.gateway["web_password_hash"],
                        lambda: on_loop(loop, lambda: gateway.reload("saved on the web page") or True),
                        data_folder, [f for f in folders.values() if f], history, gateway.router.skipped)

    if not (config.gateway["status_port"] or config.gateway["web_port"]):
        return []
    from gateway.web.server import serve   # a gateway with neither address does not pay for it
    http = serve(config.gateway, take_snapshot, page)
    return [] if http is None else [http]


if __name__ == "__main__":
    sys.exit(main())
