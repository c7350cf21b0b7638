#!/usr/bin/env python3
"""OEM Gateway: reads energy-monitor frames from listeners and forwards them through buffers.

Run ``oemgateway --help`` for the command line. The daemon is one event loop (this module)
that reads every listener, plus one sender thread per buffer; the config file says which
listeners and buffers exist, and is re-read live on SIGHUP or when it changes.
"""

import argparse
import json
import logging
import os
import signal
import stat
import sys
import time
from typing import Callable, Dict, Optional, Union

from gateway import __version__, missing_dependency

try:
    from buffers import BUFFERS
    from buffers.base import Buffer
    from buffers.spool import SPOOL_SPEC, BufferStats, Spool, SpoolLockedError, build_spool, spool_settings
    from gateway.clock import PROBES, ClockWatch
    from gateway.config import ConfigError, ConfigLoader, GatewayConfig, PluginConfig
    from gateway.eventloop import EventLoop
    from gateway.frame import Frame, RawFrame
    from gateway.logs import LogThrottle, Redactor, apply_log_levels, error_text, plural, setup_logging
    from gateway.web.status import format_status, on_loop, snapshot
    from gateway.systemd import Notifier
    from gateway.nodes import NodeDecoder
    from gateway.routing import Router
    from listeners import LISTENERS
    from listeners.base import Listener, Transmitter
except ImportError as exc:   # started outside its virtual environment, as the 2013 gateway was
    if missing_dependency(exc) is None:
        raise
    print(missing_dependency(exc), file=sys.stderr)
    sys.exit(2)

SYSTEM_CONFIG = "/etc/oemgateway/oemgateway.conf"
LISTENER_RETRY_MIN, LISTENER_RETRY_MAX = 1.0, 30.0   # s: starting a listener that failed again
EXIT_OK, EXIT_CONFIG, EXIT_RUNTIME = 0, 1, 2

log = logging.getLogger("oemgateway")


class Gateway:
    """Owns the running listeners and buffers and applies configs to them by difference."""

    def __init__(self, loop: EventLoop, loader: ConfigLoader, redactor: Redactor, spool: Spool):
        self.loop = loop
        self.spool = spool
        self.clock = ClockWatch(PROBES["trusted"])   # the config's choice comes in apply()
        self._clock_timer = None
        self._flush_scheduled = False
        self.loader = loader
        self.redactor = redactor
        self.nodes = NodeDecoder(schedule=loop.call_later)
        self.router = Router(self.nodes.node_id)
        self._tx_problems = LogThrottle(log, logging.WARNING, 60.0, loop.call_later)
        self.config: Optional[GatewayConfig] = None
        self.listeners: Dict[str, Listener] = {}
        self.buffers: Dict[str, Buffer] = {}
        self._retired: list = []
        self._config_stamp = None
        self._watch_timer = None
        self.failed: Dict[str, str] = {}   # listeners that could not open: why
        self._retry_timer = None
        self._retry_delay = LISTENER_RETRY_MIN
        self.on_state_change: Callable[[], None] = lambda: None   # what summary() says changed

    # -- frames -------------------------------------------------------------------------
    def dispatch(self, item: Union[Frame, RawFrame]) -> None:
        """Accept a frame from a listener for every buffer: decoded per ``[nodes]``, it goes into
        the shared spool (never blocks); what arrived in one loop iteration is written out at
        its end."""
        frame = self.nodes.decode(item)
        if frame is None:
            return
        correction = self.clock.note(self.spool.append(frame, self.router.skipped(frame)))
        if correction is not None:
            self.spool.correct_times(*correction)
        elif self.clock.pending and self._clock_timer is None:
            self._clock_timer = self.loop.call_later(5.0, self._check_clock)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _check_clock(self) -> None:
        """While readings wait for the clock to be synchronised, look every few seconds."""
        self._clock_timer = None
        correction = self.clock.note(None)
        if correction is not None:
            self.spool.correct_times(*correction)
        elif self.clock.pending:
            self._clock_timer = self.loop.call_later(5.0, self._check_clock)

    def _flush(self) -> None:
        self._flush_scheduled = False
        self.spool.flush()

    # -- config -------------------------------------------------------------------------
    def start(self, config: GatewayConfig) -> None:
        self._config_stamp = _file_stamp(config.path)
        self.apply(config)
        self._schedule_watch()

    def apply(self, config: GatewayConfig) -> None:
        """Make the running set of listeners and buffers match ``config``; queues are kept."""
        old = self.config
        self.config = config
        self.clock.use(PROBES[config.gateway["clock"]])   # before any listener reads
        self._apply_spool_settings(old, config)
        self.redactor.set_secrets(config.secrets())
        self.nodes.configure(config.nodes, config.gateway["node_templates"], config.gateway["emonhub_values"])
        self.router.configure({name: plugin.settings for name, plugin in config.buffers.items()})
        apply_log_levels(config.gateway["loglevel"], config.gateway["log_levels"])   # (problems: config warnings)
        if old is not None:
            for name in list(self.listeners):
                if name not in config.listeners:
                    self._close_listener(name, "removed from the config")
            for name in list(self.failed):
                if name not in config.listeners:
                    del self.failed[name]
            for name in list(self.buffers):
                if name not in config.buffers or config.buffers[name].cls is not type(self.buffers[name]):
                    self._retire_buffer(name)
        for name, plugin in config.buffers.items():
            self._apply_buffer(plugin)
        failed_before = dict(self.failed)
        for name, plugin in config.listeners.items():
            self._apply_listener(plugin)
        if self.failed != failed_before:
            self.on_state_change()

    def _apply_spool_settings(self, old: Optional[GatewayConfig], new: GatewayConfig) -> None:
        if old is None:
            return
        self.spool.settings = spool_settings(new.gateway)
        for key in ("durability", "runtime_dir", "state_dir", "status_port", "status_bind", "web_port",
                    "web_bind"):
            if old.gateway[key] != new.gateway[key]:
                log.warning("[gateway] %s changed: takes effect at the next start", key)

    def _apply_buffer(self, plugin: PluginConfig) -> None:
        buffer = self.buffers.get(plugin.name)
        if buffer is None:
            cursor = self.spool.register(plugin.name, BufferStats())
            buffer = plugin.cls(plugin.name, plugin.settings, cursor, self.clock)
            buffer.nodes, buffer.transmit = self.nodes, self.transmit
            log.info("%s (%s) started", buffer, plugin.type_name)
            buffer.start()   # (which says so if it is inactive, and why)
            self.buffers[plugin.name] = buffer
        elif plugin.settings != buffer.settings:
            buffer.update(plugin.settings)
            log.info("%s: new settings applied (%s queued, kept)", buffer, plural(len(buffer.queue), "reading"))

    def _apply_listener(self, plugin: PluginConfig) -> None:
        listener = self.listeners.get(plugin.name)
        if listener is not None:
            if type(listener) is plugin.cls and listener.update(plugin.settings):
                return
            self._close_listener(plugin.name, "re-created with new settings")
        listener = plugin.cls(plugin.name, plugin.settings, self.loop, self.dispatch, nodes=self.nodes)
        try:
            listener.open()
        except OSError as exc:
            listener.close()
            why = exc.strerror if exc.args[1:] == (exc.strerror,) else str(exc)   # no "[Errno 98]"
            why = why if why.startswith(str(listener)) else f"{listener}: {why}"
            if self.failed.get(plugin.name) != why:
                log.error("%s; trying again in %g s, then less often (every %g s at most)",
                          why, LISTENER_RETRY_MIN, LISTENER_RETRY_MAX)
                self._retry_delay = LISTENER_RETRY_MIN
            self.failed[plugin.name] = why
            if self._retry_timer is None:
                self._retry_timer = self.loop.call_later(self._retry_delay, self._retry_listeners)
                self._retry_delay = min(self._retry_delay * 2, LISTENER_RETRY_MAX)
            return
        if self.failed.pop(plugin.name, None) is not None:
            log.info("%s: started after all", listener)
        self.listeners[plugin.name] = listener

    def _retry_listeners(self) -> None:
        """Try again to start the listeners that could not open (a port held by a program that
        has since stopped, say), less and less often while some are not running."""
        self._retry_timer = None
        failed_before = dict(self.failed)
        for name in list(self.failed):
            if name in self.config.listeners:
                self._apply_listener(self.config.listeners[name])
        if self.failed != failed_before:
            self.on_state_change()

    def summary(self) -> str:
        """One line for systemd's status: what runs, and what does not, and why."""
        text = f"{plural(len(self.listeners), 'listener')}, {plural(len(self.buffers), 'buffer')}"
        if self.failed:
            text += "; NOT RUNNING: " + "; ".join(self.failed.values())
        return text

    def transmit(self, node, values, listener: Optional[str] = None) -> None:
        """Send ``values`` to radio node ``node`` (its id, or its ``[nodes]`` nodename) through
        every listener that can transmit, or only the one named ``listener``. Safe to call from
        any thread (a buffer's, paho's): the sending happens on the loop thread."""
        self.loop.call_soon_threadsafe(lambda: self._transmit(node, tuple(values), listener))

    def _transmit(self, node, values, listener: Optional[str]) -> None:
        radios = [radio for name, radio in self.listeners.items()
                  if isinstance(radio, Transmitter) and listener in (None, name)]
        if not radios:
            self._tx_problems("values for node %s not sent: %s", node,
                              f"no listener '{listener}' that can transmit" if listener
                              else "no listener here can transmit (an rfm2pi board or an rfm69 radio)")
            return
        node_id = self.nodes.table.node_id(node)
        for radio in radios:
            try:
                radio.send_frame(node_id, values)
            except ValueError as exc:
                self._tx_problems("%s: values %s for node %s not sent: %s", radio, ",".join(map(str, values)),
                                  node, exc)

    def _close_listener(self, name: str, why: str) -> None:
        listener = self.listeners.pop(name)
        listener.close()
        log.info("%s closed (%s)", listener, why)

    def _retire_buffer(self, name: str) -> None:
        """A buffer removed from the config delivers what it holds, within the shutdown time."""
        buffer = self.buffers.pop(name)
        buffer.stop(time.monotonic() + self.config.gateway["shutdown_timeout"], forget=True)
        self._retired.append(buffer)
        queued = len(buffer.queue)
        if queued:
            log.info("%s removed from the config: it has %g s (shutdown_timeout) to deliver its %s; "
                     "what is left then is dropped", buffer, self.config.gateway["shutdown_timeout"],
                     plural(queued, "queued reading"))
        else:
            log.info("%s removed from the config: closed (nothing was queued)", buffer)

    def reload(self, why: str) -> None:
        """Re-read the config; a config that no longer validates is reported and ignored. Never
        raises: whatever goes wrong is logged, and the next change is read as usual."""
        path = self.config.path
        self._config_stamp = _file_stamp(path)
        try:
            config = self.loader.load(path)
        except ConfigError as exc:
            log.error("config %s not applied (%s); the running setup stays:\n  %s",
                      path, why, "\n  ".join(exc.problems + [f"warning: {w}" for w in exc.warnings]))
            return
        except Exception as exc:   # the loader answers ConfigError; this is the last safety net
            if missing_dependency(exc) is not None:   # a plugin's package is missing
                log.error("config %s not applied (%s); the running setup stays: %s", path, why,
                          missing_dependency(exc).replace("oemgateway: ", "", 1))
                return
            log.exception("config %s not applied (%s): it could not be read; the running setup "
                          "stays", path, why)
            return
        for warning in config.warnings:
            log.warning("%s", warning)
        log.info("config %s re-read (%s)", path, why)
        try:
            self.apply(config)
        except Exception:
            log.exception("config %s (%s) applied only in part: an internal error stopped it; the "
                          "next change of the file is applied as usual", path, why)

    def _schedule_watch(self) -> None:
        interval = self.config.gateway["config_check_interval"]
        if interval > 0:
            self._watch_timer = self.loop.call_later(interval, self._check_config_file)

    def _check_config_file(self) -> None:
        try:
            if _file_stamp(self.config.path) != self._config_stamp:
                self.reload("the file changed")
        finally:   # whatever happened, the file stays watched
            self._schedule_watch()

    # -- stopping -----------------------------------------------------------------------
    def shutdown(self) -> int:
        """Stop reading, give buffers the shutdown time to deliver, save what is left in the spool;
        returns how many readings are left for the next start."""
        for timer in (self._watch_timer, self._retry_timer):
            if timer is not None:
                timer.cancel()
        for name in list(self.listeners):
            self._close_listener(name, "stopping")
        deadline = time.monotonic() + self.config.gateway["shutdown_timeout"]
        buffers = list(self.buffers.values()) + self._retired
        for buffer in self.buffers.values():
            buffer.stop(deadline)
        self.spool.flush()
        left_total = 0
        for buffer in buffers:
            left = buffer.join(deadline - time.monotonic())
            if buffer in self._retired:
                left = 0   # removed from the config: what it held is dropped (the spool said so)
            elif left and self.spool.persistent:
                log.info("%s: %s not delivered yet: kept in the spool for the next start", buffer,
                         plural(left, "reading"))
            elif left:
                log.warning("%s: %s not delivered: lost (durability = none)", buffer, plural(left, "reading"))
            log.info("%s: %s", buffer, buffer.accounting())
            left_total += left
        self.spool.close()
        return left_total


def _file_stamp(path: str):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


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
    parser.add_argument("--version", action="version", version=f"OEM Gateway {__version__}")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
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
    def take_snapshot():
        return on_loop(loop, lambda: snapshot(gateway, __version__, started, redactor.redact))

    def page():
        from gateway.web.page import page_app   # only a gateway with the page on pays for it
        # The page may name files only in the gateway's data folder (where the spool keeps its
        # disk tier) or [gateway] file_roots, never in the spool's own folders.
        folders = {tier.name: getattr(tier.files, "folder", None) for tier in (spool.hot, spool.cold)
                   if tier is not None}
        data_folder = os.path.dirname(folders["cold"]) if folders.get("cold") else None
        return page_app(config, loader, take_snapshot, redactor, lambda: gateway.config.gateway["web_password_hash"],
                        lambda: on_loop(loop, lambda: gateway.reload("saved on the web page") or True),
                        data_folder, [f for f in folders.values() if f])

    http = None
    if config.gateway["status_port"] or config.gateway["web_port"]:
        from gateway.web.server import serve   # a gateway with neither address does not pay for it
        http = serve(config.gateway, take_snapshot, page)
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
        if http is not None:
            http.close()
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


if __name__ == "__main__":
    sys.exit(main())
