"""Keep a long index run's memory flat on glibc.

Every commit runs on Lance's Rust threads, which allocate through the C library. glibc
gives each allocating thread an arena of its own (up to 8 per core) and keeps the freed
pages of an arena mapped, so the indexer's RSS ratchets up commit after commit although
nothing leaks (lance-format/lance#7242). Over 3,000 commits of 3 rows, an indexer-like
process ended at 455 MB (531 MB peak) with the default arenas and at 325 MB (412 MB
peak) with two (benchmarks/commits.py).
"""

from __future__ import annotations

import ctypes
import os

_M_ARENA_MAX = -8  # glibc's malloc.h
ARENAS = 2


def cap_arenas() -> None:
    """Let glibc make at most ARENAS malloc arenas from now on, unless MALLOC_ARENA_MAX
    is set (glibc applied it at start-up). A no-op on other C libraries."""
    if os.environ.get("MALLOC_ARENA_MAX") or not _glibc():
        return
    ctypes.CDLL(None).mallopt(_M_ARENA_MAX, ARENAS)


def _glibc() -> bool:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError):  # no such name on this C library
        return False
