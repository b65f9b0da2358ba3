"""The indexer's cap on glibc malloc arenas (store/malloc.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from photon_index.store.malloc import ARENAS, _glibc

# Six threads allocate at once, then the process counts glibc's arenas (malloc_info).
PROBE = """
import ctypes, sys, threading
from photon_index.store.malloc import cap_arenas
if sys.argv[1] == "cap":
    cap_arenas()
libc = ctypes.CDLL(None)
barrier, held = threading.Barrier(6), []
def work():
    held.append(bytes(bytearray(64 * 1024)))
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(6)]
for t in threads: t.start()
for t in threads: t.join()
libc.open_memstream.restype = ctypes.c_void_p
buf, size = ctypes.c_char_p(), ctypes.c_size_t()
stream = libc.open_memstream(ctypes.byref(buf), ctypes.byref(size))
libc.malloc_info(0, ctypes.c_void_p(stream))
libc.fclose(ctypes.c_void_p(stream))
print(ctypes.string_at(buf, size.value).count(b"<heap nr="))
"""


def arenas(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env, check=True
    )
    return int(out.stdout)


@pytest.mark.skipif(not _glibc(), reason="glibc's arenas only")
def test_the_cap_bounds_the_arenas_of_concurrent_threads() -> None:
    assert arenas("free") > ARENAS
    assert arenas("cap") <= ARENAS
