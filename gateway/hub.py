"""The running gateway: the listeners and buffers a config asks for, and a frame's route from a
listener through ``[nodes]`` into the spool that every buffer delivers from.

The hub knows plugins only by their contracts (``listeners.base``, ``buffers.base``); the
config names their classes (through the registries the command line gives the loader).
"""

import logging
import os
import time
from typing import Callable, Dict, Optional, Union

from gateway import missing_dependency
from gateway.backoff import Backoff
from gateway.clock import PROBES, ClockWatch
from gateway.config import CORE_PARTS, ConfigError, ConfigLoader, GatewayConfig, PluginConfig
from gateway.delivery import Delivery
from gateway.eventloop import EventLoop
from gateway.frame import Frame, RawFrame
from gateway.logs import LogThrottle, Redactor, apply_log_levels, plural
from gateway.nodes import NodeDecoder
from gateway.routing import Router
from gateway.settings import restart_keys
from gateway.spool import SPOOL_SETTINGS, BufferStats, Spool, spool_settings
from listeners.base import Listener, Transmitter   # the listener contracts

LISTENER_RETRY_MIN, LISTENER_RETRY_MAX = 1.0, 30.0   # s: starting a listener that failed again

log = logging.getLogger("oemgateway")
GATEWAY_PARTS = CORE_PARTS + (SPOOL_SETTINGS,)   # every part's [gateway] settings (gateway.settings)


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
        self.buffers: Dict[str, Delivery] = {}   # each buffer's engine (its plugin: .plugin)
        self._retired: list = []
        self._config_stamp = None
        self._watch_timer = None
        self.failed: Dict[str, str] = {}   # listeners that could not open: why
        self._retry_timer = None
        self._retry_backoff = Backoff(LISTENER_RETRY_MIN, LISTENER_RETRY_MAX)
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
                if name not in config.buffers or config.buffers[name].cls is not type(self.buffers[name].plugin):
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
        for key in restart_keys(GATEWAY_PARTS):
            if old.gateway[key] != new.gateway[key]:
                log.warning("[gateway] %s changed: takes effect at the next start", key)

    def _apply_buffer(self, plugin: PluginConfig) -> None:
        buffer = self.buffers.get(plugin.name)
        if buffer is None:
            cursor = self.spool.register(plugin.name, BufferStats())
            destination = plugin.cls(plugin.name, plugin.settings, clock=self.clock, nodes=self.nodes,
                                     transmit=self.transmit, backlog=cursor.__len__)
            buffer = Delivery(destination, cursor)
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
        listener.gateway_dirs = (self.config.gateway["runtime_dir"], self.config.gateway["state_dir"])
        try:
            listener.open()
        except OSError as exc:
            listener.close()
            why = exc.strerror if exc.args[1:] == (exc.strerror,) else str(exc)   # no "[Errno 98]"
            why = why if why.startswith(str(listener)) else f"{listener}: {why}"
            if self.failed.get(plugin.name) != why:
                log.error("%s; trying again in %g s, then less often (every %g s at most)",
                          why, LISTENER_RETRY_MIN, LISTENER_RETRY_MAX)
                self._retry_backoff.reset()
            self.failed[plugin.name] = why
            if self._retry_timer is None:
                self._retry_timer = self.loop.call_later(self._retry_backoff.next(), self._retry_listeners)
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
