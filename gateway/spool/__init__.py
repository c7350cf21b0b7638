"""The spool: one durable, bounded log of readings that every buffer delivers from.

``spool.py`` the log itself (append, read after a cursor, spill, bounds, recovery);
``tiers.py`` the segment files of a tier; ``cursors.py`` each buffer's place and counters;
``folders.py`` where it lives and the ``[gateway]`` settings that build it;
``journal.py`` the file format; ``storage.py`` the file I/O (real folders, or memory).
"""

from gateway.spool.cursors import BufferStats, Cursor, CursorStore  # noqa: F401
from gateway.spool.folders import (SPOOL_SETTINGS, SPOOL_SPEC, SpoolLockedError, build_spool, filesystem_type,  # noqa: F401
                                   runtime_candidates, runtime_dir, spool_settings, state_dir)
from gateway.spool.spool import SPILL_CHUNK, Spool, SpoolSettings  # noqa: F401
