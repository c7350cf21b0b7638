"""Where the spool lives: its folders chosen from the config and the service's environment, made
private, locked against a second gateway; the ``[gateway]`` settings that shape it."""

import fcntl
import logging
import os
from typing import List, Tuple

from gateway.settings import GatewaySettings
from gateway.spool.spool import Spool, SpoolSettings
from gateway.spool.storage import MemoryFiles, OsFiles, UnsafeFolderError, open_regular, private_folder

log = logging.getLogger("oemgateway.spool")


SPOOL_SPEC = """
durability = option('none', 'process', 'power', default='process')
runtime_dir = path(default='')
state_dir = path(default='')
hot_max_mb = float(min=0.1, max=4096, default=16)
max_disk_mb = float(min=1, max=1048576, default=64)
max_age = float(min=0, max=3650, default=30)
spill_after = float(min=0, max=86400, default=60)
spill_interval = float(min=1, max=3600, default=60)
power_sync_interval = float(min=0.5, max=60, default=5)
"""
SPOOL_SETTINGS = GatewaySettings(SPOOL_SPEC, sample="""
# -- The spool: where readings wait until every buffer has delivered them --------------
# none:    in memory only; a restart loses what is queued.
# process: (default) every reading is kept on a tmpfs at once, so it survives kill -9,
#          crashes and restarts at no flash cost; readings a destination has not taken
#          for spill_after seconds are saved to the SD card every spill_interval seconds
#          (one compressed batch, one fdatasync); a clean stop saves everything unsent.
#          Nothing is written to the card while every destination is healthy.
# power:   also saves undelivered readings to the card every power_sync_interval
#          seconds, for systems without a UPS that prefer power-cut safety to flash life.
durability
# Folder on a tmpfs for the hot tier. Empty: $RUNTIME_DIRECTORY (set by systemd's
# RuntimeDirectory= and the SysV script), else $XDG_RUNTIME_DIR/oemgateway, else
# /run/oemgateway, else /dev/shm/oemgateway-<uid>. Only a folder of the gateway's user
# that nobody else can change is used.
runtime_dir
# Folder on persistent storage for the cold tier. Empty: $STATE_DIRECTORY (systemd's
# StateDirectory=, the SysV script), else /var/lib/oemgateway, else
# ~/.local/state/oemgateway. The same rule applies.
state_dir
# Most RAM (MB) the hot tier may use; beyond it the oldest readings already saved to
# disk leave RAM (or, if they cannot be saved, are dropped and counted).
hot_max_mb
# Most disk space (MB) the cold tier may use; beyond it the oldest readings are dropped
# and counted. 64 MB holds about 2 weeks of 10 nodes every 10 s.
max_disk_mb
# Readings older than this many days are dropped (0 = no age limit).
max_age
# Seconds a destination may fail before its readings are saved to disk.
spill_after
# Seconds between saves to disk while saving is needed.
spill_interval
# With durability = power: seconds between saves to disk.
power_sync_interval
""", restart=("durability", "runtime_dir", "state_dir"))
"""The spool's part of ``[gateway]`` (``gateway.settings``)."""


class SpoolLockedError(RuntimeError):
    """Another gateway process is using the same spool folders."""


def spool_settings(gateway: dict) -> SpoolSettings:
    power = gateway["durability"] == "power"
    return SpoolSettings(
        hot_max_bytes=int(gateway["hot_max_mb"] * 1024 * 1024),
        cold_max_bytes=int(gateway["max_disk_mb"] * 1024 * 1024),
        max_age=gateway["max_age"] * 86400,
        spill_after=0.0 if power else gateway["spill_after"],
        spill_interval=gateway["power_sync_interval"] if power else gateway["spill_interval"],
    )


def _first_private(candidates: List[Tuple[str, str]], tier: str, key: str) -> str:
    """The first of ``candidates`` ((where it comes from, folder)) that is, or can be made, a
    folder of this user's that nobody else can change (``storage.private_folder``): never one
    another user made or can reach through a link, so nobody can point the spool elsewhere.
    The spool's own folder inside it is strictly private (``OsFiles``)."""
    problems = []
    for source, folder in candidates:
        try:
            chosen = private_folder(folder, sticky_ok=True)
        except UnsafeFolderError as exc:
            problems.append((logging.WARNING, f"{source}{exc}"))
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            problems.append((logging.DEBUG, f"{source}{folder}: cannot create it ({reason})"))
        else:
            for level, problem in problems:
                log.log(level, "spool: not using %s", problem)
            return chosen
    if len(candidates) == 1:
        raise UnsafeFolderError(problems[0][1])
    advice = f"set [gateway] {key} to a folder of the gateway's own"
    if any(level == logging.WARNING for level, _ in problems):
        advice = f"remove a folder someone else made, or {advice}"
    raise UnsafeFolderError(f"no folder for the spool's {tier} can be used: "
                            f"{'; '.join(text for _, text in problems)}. To fix: {advice}")


def _candidates(configured: str, key: str, service_variable: str, env, fallbacks) -> List[Tuple[str, str]]:
    if configured:
        return [(f"[gateway] {key}: ", configured)]
    service = env.get(service_variable, "").split(":")[0]
    return ([(f"${service_variable}: ", service)] if service else []) + fallbacks


def runtime_candidates(configured: str, env=os.environ) -> List[Tuple[str, str]]:
    """Where the hot tier may live (a tmpfs), best first: the config's ``runtime_dir``; else
    the service's folder (systemd's ``RuntimeDirectory=`` and the SysV script set
    $RUNTIME_DIRECTORY); the user's own $XDG_RUNTIME_DIR; /run/oemgateway; /dev/shm."""
    own = [("$XDG_RUNTIME_DIR: ", os.path.join(env["XDG_RUNTIME_DIR"], "oemgateway"))] \
        if env.get("XDG_RUNTIME_DIR") else []
    return _candidates(configured, "runtime_dir", "RUNTIME_DIRECTORY", env, own + [
        ("", "/run/oemgateway"), ("", f"/dev/shm/oemgateway-{os.geteuid()}")])


def state_candidates(configured: str, env=os.environ) -> List[Tuple[str, str]]:
    """Where the cold tier may live (persistent storage), best first: the config's
    ``state_dir``; else $STATE_DIRECTORY (systemd's ``StateDirectory=``, the SysV script);
    /var/lib/oemgateway; the user's own $XDG_STATE_HOME (~/.local/state)."""
    home = env.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return _candidates(configured, "state_dir", "STATE_DIRECTORY", env, [
        ("", "/var/lib/oemgateway"), ("", os.path.join(home, "oemgateway"))])


def runtime_dir(configured: str) -> str:
    """The hot tier's folder: see :func:`runtime_candidates`."""
    return _first_private(runtime_candidates(configured), "hot tier (a tmpfs)", "runtime_dir")


def state_dir(configured: str) -> str:
    """The cold tier's folder: see :func:`state_candidates`."""
    return _first_private(state_candidates(configured), "disk tier", "state_dir")


def filesystem_type(path: str) -> str:
    """The type of the file system ``path`` is on, from /proc/mounts ('' if unknown)."""
    best, kind = "", ""
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) > 2 and (path == fields[1] or path.startswith(fields[1].rstrip("/") + "/")):
                    if len(fields[1]) >= len(best):
                        best, kind = fields[1], fields[2]
    except OSError:
        pass
    return kind


def _tmpfs_advice(hot_dir: str) -> str:
    """Where this machine has a tmpfs for the hot tier, as the advice to set ``runtime_dir``."""
    for folder in (os.environ.get("XDG_RUNTIME_DIR", ""), "/run", "/dev/shm"):
        if folder and filesystem_type(os.path.realpath(folder)) in ("tmpfs", "ramfs") \
                and not os.path.realpath(hot_dir).startswith(os.path.realpath(folder) + "/"):
            return f"set [gateway] runtime_dir to a folder on a tmpfs, e.g. {os.path.join(folder, 'oemgateway')}"
    return "this machine has no tmpfs at /run or /dev/shm: mount one and set [gateway] runtime_dir to it"


def build_spool(gateway: dict) -> Spool:
    """The spool ``[gateway]`` asks for, its folders created and locked against a second gateway."""
    settings = spool_settings(gateway)
    if gateway["durability"] == "none":
        log.info("spool: durability = none: readings are queued in memory only")
        return Spool(MemoryFiles(), None, settings)
    hot_dir = os.path.join(runtime_dir(gateway["runtime_dir"]), "spool")
    cold_dir = os.path.join(state_dir(gateway["state_dir"]), "spool")
    hot = OsFiles(hot_dir)
    _lock_folder(hot_dir)
    kind = filesystem_type(os.path.realpath(hot_dir))
    if kind not in ("tmpfs", "ramfs"):
        log.warning("spool: %s is on %s, not tmpfs: the hot tier will cost flash writes (%s)", hot_dir,
                    kind or "an unknown file system", _tmpfs_advice(hot_dir))
    log.info("spool: hot tier %s, cold tier %s (durability = %s)", hot_dir, cold_dir, gateway["durability"])
    return Spool(hot, OsFiles(cold_dir), settings)


def _lock_folder(folder: str) -> None:
    """Hold an exclusive lock on ``folder`` for the life of the process."""
    fd = open_regular(os.path.join(folder, "lock"), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise SpoolLockedError(f"another gateway is already using {folder}; give this one its own "
                               f"runtime_dir and state_dir") from None
