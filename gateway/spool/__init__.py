"""The spool: the durable, bounded log of readings every buffer delivers from (see ``spool.py``)."""

from gateway.spool.spool import (SPILL_CHUNK, SPOOL_SPEC, BufferStats, Cursor, CursorStore, Spool,  # noqa: F401
                                 SpoolLockedError, SpoolSettings, build_spool, filesystem_type,
                                 runtime_candidates, runtime_dir, spool_settings, state_dir)
