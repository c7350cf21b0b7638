"""Where a config saved from the web page may make the gateway read or write files.

A file buffer writes (and renames, when it rotates) the file its ``path`` names; ``ca_file``,
``certfile``, ``keyfile`` are read; ``runtime_dir``/``state_dir`` get the spool; a ``spy://``
serial port writes a trace. Whoever logs in to the page must not reach every file the
gateway's user can write through them. So a setting that names a file or folder
(``Plugin.file_settings``, the ``path`` settings of ``[gateway]``) and that a save from the
page sets or changes must name a place under the gateway's data folder (where the spool keeps
its disk tier) or under a folder listed in ``[gateway] file_roots``, which only the file
itself can set. Symlinks are resolved first, so a link cannot lead out; and the config file,
its backup and the spool's folders are never allowed. What the file already says is the
admin's choice and stays as it is.
"""

import os
import time
from typing import Dict, List, Optional, Sequence, Tuple

from gateway.config import PLUGIN_KINDS, GatewayConfig, section_label
from gateway.plugin import path_keys

Place = Tuple[Tuple[str, ...], str]   # section path, key


class FileRoots:
    """The folders the page may name files in, and the places it may never name."""

    def __init__(self, config_path: str, data_folder: Optional[str], protected: Sequence[str] = ()):
        self.config_path = os.path.abspath(config_path)
        self.data_folder = data_folder
        self.protected = [os.path.realpath(p) for p in
                          (self.config_path, self.config_path + ".bak", *protected) if p]

    def problems(self, new: GatewayConfig, current: Optional[GatewayConfig], current_roots: List[str],
                 gateway_spec: str) -> List[str]:
        """What is wrong with ``new`` (a config the page wants to save) against ``current``
        (the one in the file, None if it does not load), one message per setting."""
        where = f"{self.config_path}: "
        if list(new.gateway.get("file_roots") or []) != list(current_roots):
            return [where + f"[gateway] file_roots = {new.gateway.get('file_roots')!r}: can be changed "
                            f"only in the file itself, not from the web page"]
        roots = [os.path.realpath(r) for r in ([self.data_folder] if self.data_folder else [])
                 + [os.path.join(os.path.dirname(self.config_path), os.path.expanduser(r)) for r in current_roots]]
        old = _named_files(current, gateway_spec) if current is not None else {}
        problems = []
        for place, (cls, value) in _named_files(new, gateway_spec).items():
            if old.get(place) == (cls, value):
                continue
            path, key = place
            reason = self._refusal(value, roots)
            if reason:
                problems.append(where + f"{section_label(path)} {key} = {value!r}: {reason}")
        return problems

    def _refusal(self, value: str, roots: List[str]) -> Optional[str]:
        """Why the page may not name ``value`` (a strftime pattern for a file buffer: checked
        as written and for today), or None."""
        for candidate in {value, time.strftime(value)} if "%" in value else {value}:
            real = os.path.realpath(os.path.abspath(candidate))
            if any(_inside(real, place) for place in self.protected):
                return "the config file, its backup and the spool's folders cannot be used"
            if not any(_inside(real, root) for root in roots):
                allowed = " or ".join(roots) if roots else "nowhere (no data folder)"
                return (f"a file set from the web page must be under {allowed} (symlinks "
                        f"followed); list other folders in [gateway] file_roots in the file itself")
        return None


def _named_files(config: GatewayConfig, gateway_spec: str) -> Dict[Place, Tuple[Optional[type], str]]:
    """Every file or folder ``config`` names: ``{(section path, key): (plugin class, path)}``."""
    found = {(("gateway",), key): (None, config.gateway[key]) for key in path_keys(gateway_spec)
             if config.gateway.get(key)}
    for kind in PLUGIN_KINDS:
        for name, plugin in getattr(config, kind).items():
            for key, value in plugin.cls.file_settings(plugin.settings).items():
                found[((kind, name), key)] = (plugin.cls, str(value))
    return found


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)
