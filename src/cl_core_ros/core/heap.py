"""How this process's C heap hands memory back to the system (glibc; elsewhere no-ops).

glibc's ``malloc`` serves a request below the *mmap threshold* from its heap and a larger one
with a mapping of its own, unmapped again on ``free``; free space above the *trim threshold*
at the heap's top is given back. Unless set explicitly, both move: the mmap threshold rises to
the size of every mapped block that is freed (up to 32 MiB on 64-bit systems) and the trim
threshold follows at twice that (mallopt(3), ``M_MMAP_THRESHOLD``, ``M_TRIM_THRESHOLD``).
That hurt the learner twice:

- Memory. Once a deep consolidation has freed its activation maps, every later block below
  32 MiB comes from the heap, whose freed space mostly stays resident. ``bench_scaling``, 100
  classes: 573 MiB at rest and a 1,460 MiB peak while consolidating 11,000 pending latents
  with glibc's defaults; 440 and 1,039 MiB with the thresholds fixed here.
- Speed. Before the first lesson the heap's top was given back to the system after every
  frame and faulted in again at the next: about 3,900 minor page faults per frame, a
  single-frame prediction (640x480, 192 px, one thread) in 39-40 ms against 33-34 ms once the
  lessons' blocks sat above the top. With the thresholds here: 81 faults, 32.5 ms before the
  lessons and 33 ms after.

The values: an mmap threshold of :data:`MMAP_THRESHOLD_BYTES` keeps the per-frame tensors on
the heap (at 1 MiB, fresh mappings cost 47 ms per frame; at 4 MiB, 37 ms), and a trim
threshold of :data:`TRIM_THRESHOLD_BYTES` keeps the heap's top in place between frames (with
the mmap threshold alone, which leaves the trim threshold at 128 KiB, frames took 48 ms before
the lessons). The deep consolidation pays: its training maps above 16 MiB are mapped afresh
at every step, 5.6 s instead of 4.7 s per 128-latent step on one thread. A 32 MiB mmap
threshold kept 4.7 s but also glibc's resident set (20 classes: 717 MiB at rest and 707 MiB
more while training, against 590 and 396 MiB here). The consolidation runs on its own thread
beside inference; the frame rate and the resident set are what a robot feels.
"""

import ctypes
import functools
import logging

logger = logging.getLogger(__name__)

MMAP_THRESHOLD_BYTES = 16 * 2 ** 20
"""Blocks from this size up are mapped on their own and unmapped when freed (the per-frame
tensors stay below it)."""

TRIM_THRESHOLD_BYTES = 32 * 2 ** 20
"""Free space at the heap's top is given back to the system only beyond this size."""

_M_TRIM_THRESHOLD = -1  # <malloc.h>
_M_MMAP_THRESHOLD = -3


@functools.cache
def _libc():
    """Return the C library this process runs on if it has glibc's malloc controls, else None."""
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols: no library search, no subprocess
        libc.mallopt, libc.malloc_trim  # noqa: B018 - glibc only
    except (OSError, AttributeError):
        return None
    return libc


def fix_heap_thresholds(mmap_bytes: int = MMAP_THRESHOLD_BYTES,
                        trim_bytes: int = TRIM_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap and trim thresholds (bytes), ending their dynamic adjustment.

    Returns True when both were set; False where the C library is not glibc (nothing changes)
    or it refused a value. Call it once, early, in an executable: it applies to the whole
    process. ValueError unless both sizes are > 0.
    """
    if mmap_bytes <= 0 or trim_bytes <= 0:
        raise ValueError(f'thresholds must be > 0, got mmap {mmap_bytes}, trim {trim_bytes}')
    libc = _libc()
    if libc is None:
        return False
    done = True
    for option, value in ((_M_MMAP_THRESHOLD, mmap_bytes), (_M_TRIM_THRESHOLD, trim_bytes)):
        if not libc.mallopt(ctypes.c_int(option), ctypes.c_int(value)):
            logger.debug('mallopt(%d, %d) was refused', option, value)
            done = False
    return done


def release_free_heap() -> bool:
    """Return the heap's free pages to the system (glibc ``malloc_trim(0)``).

    Returns True when memory was released, False when there was none or the C library is not
    glibc.
    """
    libc = _libc()
    return bool(libc.malloc_trim(ctypes.c_size_t(0))) if libc is not None else False
