"""The buffer contract: what a destination type implements.

A buffer plugin says *how to deliver one batch*: ``send(batch)`` returns when the destination
has every reading of the batch, or raises one of the errors below to say what went wrong and,
when it knows, what the destination kept (see ``gateway.delivery`` for what the engine then
does). Everything else (the queue, the sender thread, batch sizes, retries, counting) is the
engine's, ``gateway.delivery.Delivery``, so a plugin is constructed and its ``send()`` called
with a list of frames, in a unit test as in the daemon.
"""

from typing import Callable, List, Optional

from gateway.clock import PROBES, ClockWatch
from gateway.delivery import AuthError, DeliveryError, RejectedError, TooLargeError, TransientError
from gateway.frame import Frame
from gateway.plugin import Plugin
from gateway.routing import ROUTING_SPEC

__all__ = ["Buffer", "DeliveryError", "TransientError", "RejectedError", "AuthError", "TooLargeError"]


class _ConfiguredWhenBuilt(type):
    """Calls ``configure()`` once the object is built, every subclass's ``__init__`` done, so a
    plugin sets up its attributes in ``__init__`` in the usual order."""

    def __call__(cls, *args, **kwargs):
        plugin = super().__call__(*args, **kwargs)
        plugin.configure()
        return plugin


class Buffer(Plugin, metaclass=_ConfiguredWhenBuilt):
    """A destination type; subclasses implement ``send()``.

    ``clock``: whether the wall clock is right (readings taken before it was are held back
    by some destinations); ``nodes``: the ``[nodes]`` decoder (``nodes.table`` is the current
    NodeTable); ``transmit(node, values, listener=None)`` sends values to a radio node through
    the listeners that can transmit (any thread, never blocks); ``backlog()``: how many
    readings wait for this buffer, those of the batch being sent included. Each may be None
    where the plugin has no use for it (a unit test).
    """

    KIND = "buffer"
    SPEC = """
    active = boolean(default=True)
    max_items = integer(min=0, max=100000000, default=0)
    batch_size = integer(min=1, max=100000, default=500)
    retry_max = float(min=0.01, max=86400, default=5)
    linger = float(min=0, max=1, default=0.01)
    """ + ROUTING_SPEC   # from_listeners, from_nodes: see gateway.routing
    SAMPLE_COMMON = """
    # Settings every buffer has:
    #   active = True        False: neither record nor send, but keep what is queued; an
    #                        inactive buffer holding nothing costs nothing (no RAM, no disk)
    #   max_items = 0        most readings queued for this buffer (0: only the spool's
    #                        bounds apply); beyond it the oldest are dropped, counted, logged
    #   batch_size = 500     most readings sent in one request; fewer (down to 10) while
    #                        the destination refuses readings often, so that few are sent twice
    #   retry_max = 5        while a destination fails, each retry is one reading; the
    #                        wait doubles from 0.5 s up to this many seconds, a random half
    #                        to all of it (a refused key or URL: 12 x this)
    #   linger = 0.01        seconds a reading waits for others to share its request when
    #                        it arrives alone (cut short once batch_size are queued); 0: none
    #   from_listeners =     take only the readings of these listeners (their section names);
    #                        empty: every listener. emonhub's subchannels become this.
    #   from_nodes =         take only the readings of these nodes (id or nodename); empty:
    #                        every node. With both set, a reading must match both. A name that
    #                        matches nothing in this file is warned about.
    """

    def __init__(self, name: str, settings: dict, clock: Optional[ClockWatch] = None, nodes=None,
                 transmit: Optional[Callable[..., None]] = None, backlog: Optional[Callable[[], int]] = None):
        super().__init__(name, settings)
        self.clock = clock or ClockWatch(PROBES["trusted"])   # is our wall clock right?
        self.nodes = nodes
        self.transmit = transmit
        self.backlog = backlog

    def configure(self) -> None:
        """(Re)build whatever the plugin derives from ``self.settings``: once built, then on the
        sender thread after a settings change."""

    def send(self, batch: List[Frame]) -> None:
        """Deliver every frame of ``batch`` or raise a DeliveryError."""
        raise NotImplementedError

    def check(self, frame: Frame) -> Optional[str]:
        """Why the destination can never take ``frame`` (it is then dropped as rejected), or None."""
        return None

    def inactive_reason(self) -> Optional[str]:
        """Why this buffer cannot record yet (e.g. no API key), or None when it can."""
        return None

    def close_transport(self) -> None:
        """Release connections and files; runs on the sender thread when it ends."""
