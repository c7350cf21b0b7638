"""What the gateway is doing, for people and for monitoring: ``/status`` (JSON), ``/metrics``
(Prometheus text) and ``oemgateway --status`` (``gateway.web.server`` serves the first two).

One snapshot function serves them all, so they never disagree. The snapshot is taken on the
event loop's thread (the HTTP server's thread asks for it and waits), so it never races a
config reload; if the loop does not answer within a few seconds, ``/status`` says so.
"""

import threading
import time
from typing import Callable, Optional

LOOP_ANSWER_TIMEOUT = 5.0


def _age(now: float, then: Optional[float]) -> Optional[float]:
    return None if then is None else round(max(0.0, now - then), 1)


def snapshot(gateway, version: str, started: float, redact: Callable[[str], str]) -> dict:
    """Everything /status shows. Runs on the event loop thread."""
    now = time.time()
    listeners = {}
    for name, listener in gateway.listeners.items():
        stats = listener.stats
        listeners[name] = {
            "type": gateway.config.listeners[name].type_name if name in gateway.config.listeners else "?",
            "state": getattr(listener, "state", "open"),
            "frames_good": stats.frames_good, "frames_bad": stats.frames_bad,
            "last_frame_age_s": _age(now, stats.last_frame_time),
            **listener.status_details(),
        }
    for name, why in getattr(gateway, "failed", {}).items():   # could not open: tried again in the background
        listeners.setdefault(name, {
            "type": gateway.config.listeners[name].type_name if name in gateway.config.listeners else "?",
            "state": "not running", "frames_good": 0, "frames_bad": 0, "last_frame_age_s": None,
            "error": redact(why)})
    buffers = {}
    for name, buffer in gateway.buffers.items():
        stats = buffer.stats
        queued = len(buffer.queue)
        oldest = buffer.queue.oldest_time() if queued else None
        buffers[name] = {
            "type": gateway.config.buffers[name].type_name if name in gateway.config.buffers else "?",
            "state": buffer.state, "recording": buffer.recording, "inactive_reason": buffer.why_inactive(),
            "queued": queued, "oldest_queued_age_s": _age(now, oldest),
            "accepted": stats.accepted, "delivered": stats.delivered, "dropped": dict(stats.dropped),
            "rejected_by_node": dict(buffer.rejected_by_node), "replayed": stats.replayed,
            "retries": stats.retries, "last_success_age_s": _age(now, stats.last_success),
            "last_error": redact(stats.last_error) if stats.last_error else None,
        }
    spool = gateway.spool
    described = gateway.nodes.table.describe()
    return {
        "version": version,
        "uptime_s": round(time.monotonic() - started, 1),
        "config_file": gateway.config.path,
        "clock": {"mode": gateway.config.gateway["clock"], "synchronised": gateway.clock.synchronised()},
        "spool": {"durability": gateway.config.gateway["durability"],
                  "memory_bytes": spool.hot.bytes,
                  "disk_bytes": spool.cold.bytes if spool.cold is not None else 0,
                  "disk_writes": spool.stats["spill_writes"], "disk_errors": spool.stats["spill_errors"]},
        "listeners": listeners,
        "buffers": buffers,
        "nodes": {node: dict({"frames": n["frames"], "rssi": n["rssi"],
                              "last_seen_age_s": _age(now, n["last_seen"]), "dropped": n["dropped"],
                              "duplicates": n["duplicates"], "missed": n["missed"], "values": n["values"]},
                             **_node_labels(described.get(node, {})))
                  for node, n in gateway.nodes.snapshot().items()},
    }


def _node_labels(described: dict) -> dict:
    """A node's ``[nodes]`` name and its inputs' units by name, for people."""
    units = dict(zip(described.get("names", []), described.get("units", [])))
    return {"nodename": described.get("nodename"), "units": units}


def prometheus(status: dict) -> str:
    """The snapshot as Prometheus text exposition (format 0.0.4)."""
    lines = []

    def metric(name, kind, help_text, samples):
        lines.append(f"# HELP oemgateway_{name} {help_text}")
        lines.append(f"# TYPE oemgateway_{name} {kind}")
        for labels, value in samples:
            if value is None:
                continue
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            lines.append(f"oemgateway_{name}{{{label_text}}} {float(value):g}" if label_text
                         else f"oemgateway_{name} {float(value):g}")

    metric("uptime_seconds", "gauge", "Seconds since the gateway started.", [({}, status["uptime_s"])])
    metric("clock_synchronised", "gauge", "1 if the system clock is synchronised.",
           [({}, int(status["clock"]["synchronised"]))])
    listeners = status["listeners"]
    metric("listener_frames_total", "counter", "Frames read, by result.",
           [({"listener": n, "result": r}, l[f"frames_{r}"]) for n, l in listeners.items() for r in ("good", "bad")])
    metric("listener_up", "gauge", "1 if the listener is open.",
           [({"listener": n}, int(l["state"] == "open")) for n, l in listeners.items()])
    metric("listener_last_frame_age_seconds", "gauge", "Seconds since the last good frame.",
           [({"listener": n}, l["last_frame_age_s"]) for n, l in listeners.items()])
    buffers = status["buffers"]
    metric("readings_accepted_total", "counter", "Readings accepted for a buffer.",
           [({"buffer": n}, b["accepted"]) for n, b in buffers.items()])
    metric("readings_delivered_total", "counter", "Readings the destination acknowledged.",
           [({"buffer": n}, b["delivered"]) for n, b in buffers.items()])
    metric("readings_dropped_total", "counter", "Readings given up, by reason.",
           [({"buffer": n, "reason": r}, c) for n, b in buffers.items() for r, c in b["dropped"].items()])
    metric("readings_replayed_total", "counter", "Readings sent again because their delivery position was lost.",
           [({"buffer": n}, b["replayed"]) for n, b in buffers.items()])
    metric("readings_queued", "gauge", "Readings waiting for delivery.",
           [({"buffer": n}, b["queued"]) for n, b in buffers.items()])
    metric("oldest_queued_age_seconds", "gauge", "Age of the oldest reading waiting (delivery lag).",
           [({"buffer": n}, b["oldest_queued_age_s"] or 0) for n, b in buffers.items()])
    metric("send_retries_total", "counter", "Failed delivery attempts.",
           [({"buffer": n}, b["retries"]) for n, b in buffers.items()])
    metric("buffer_up", "gauge", "1 if the buffer's last delivery worked (or nothing failed yet).",
           [({"buffer": n}, int(b["state"] in ("ok", "inactive"))) for n, b in buffers.items()])
    spool = status["spool"]
    metric("spool_bytes", "gauge", "Bytes the spool uses, by tier.",
           [({"tier": "memory"}, spool["memory_bytes"]), ({"tier": "disk"}, spool["disk_bytes"])])
    metric("spool_disk_writes_total", "counter", "Batches written to disk.", [({}, spool["disk_writes"])])
    metric("spool_disk_errors_total", "counter", "Failed writes to disk.", [({}, spool["disk_errors"])])
    nodes = status["nodes"]
    metric("node_frames_total", "counter", "Frames received per node.",
           [({"node": n}, e["frames"]) for n, e in nodes.items()])
    metric("node_missed_total", "counter", "Packets a node sent that never arrived (message counter gaps).",
           [({"node": n}, e["missed"]) for n, e in nodes.items()])
    metric("node_rssi_dbm", "gauge", "Last radio signal strength per node.",
           [({"node": n}, e["rssi"]) for n, e in nodes.items()])
    metric("node_last_seen_age_seconds", "gauge", "Seconds since a node was last heard.",
           [({"node": n}, e["last_seen_age_s"]) for n, e in nodes.items()])
    return "\n".join(lines) + "\n"


def format_status(status: dict) -> str:
    """The snapshot for a person: one line per listener, buffer and node."""
    def age(seconds):
        return "never" if seconds is None else f"{seconds:.0f} s ago"

    clock = status["clock"]
    out = [f"OEM Gateway {status['version']}, up {status['uptime_s']:.0f} s, config {status['config_file']}",
           f"clock: {'synchronised' if clock['synchronised'] else 'NOT synchronised'} ({clock['mode']})",
           "", "listeners:"]
    for name, l in status["listeners"].items():
        out.append(f"  {name:<16} {l['type']:<8} {l['state']:<12} {l['frames_good']} good, "
                   f"{l['frames_bad']} bad, last frame {age(l['last_frame_age_s'])}")
        for device, d in l.get("devices", {}).items():
            line = (f"  {'':<16} {device:<16} {d['state']:<8} last good read {age(d['last_good_read_age_s'])}, "
                    f"{d['errors']} errors")
            out.append(line + (f" (last: {d['last_error']})" if d["errors"] and d["last_error"] else ""))
    out += ["", "buffers:"]
    for name, b in status["buffers"].items():
        dropped = sum(b["dropped"].values())
        line = (f"  {name:<16} {b['type']:<8} {b['state']:<12} {b['delivered']} delivered, "
                f"{b['queued']} queued")
        if b["queued"]:
            line += f" (oldest {age(b['oldest_queued_age_s'])})"
        if dropped:
            line += ", dropped " + ", ".join(f"{n} {r}" for r, n in b["dropped"].items() if n)
        if b["replayed"]:
            line += f", {b['replayed']} replayed"
        if b["inactive_reason"]:
            line += f"; inactive ({b['inactive_reason']}): not recording"
        out.append(line)
        if b.get("rejected_by_node"):
            out.append(f"  {'':<16} rejected by node: " + ", ".join(
                f"node {node} {n}" for node, n in b["rejected_by_node"].items()))
        if b["last_error"] and b["state"] != "ok":
            out.append(f"  {'':<16} last error: {b['last_error']}")
    spool = status["spool"]
    out += ["", f"spool: {spool['durability']}, {spool['memory_bytes']} bytes in memory, "
                f"{spool['disk_bytes']} bytes on disk", "", "nodes:"]
    for node, n in status["nodes"].items():
        rssi = f", rssi {n['rssi']} dBm" if n["rssi"] is not None else ""
        out.append(f"  {node:<16} {n['frames']} frames, last {age(n['last_seen_age_s'])}{rssi}")
    return "\n".join(out)


def _escape(value) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def on_loop(loop, fn: Callable[[], dict]) -> Optional[dict]:
    """Run ``fn`` on the event loop thread and wait for its result (None if it never comes)."""
    done = threading.Event()
    box = {}

    def run():
        try:
            box["value"] = fn()
        finally:
            done.set()

    loop.call_soon_threadsafe(run)
    return box.get("value") if done.wait(LOOP_ANSWER_TIMEOUT) else None
