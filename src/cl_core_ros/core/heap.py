"""How this process's C heap hands freed memory back to the system (glibc; elsewhere no-ops).

glibc's ``malloc`` serves a request below the *mmap threshold* from its heap and a larger one
with its own ``mmap``, unmapped again on ``free``. The threshold starts at 128 KiB and, unless
it was set explicitly, rises to the size of every mmapped block that is freed, up to 32 MiB on
64-bit systems (mallopt(3), ``M_MMAP_THRESHOLD``). Once a deep consolidation has freed its
20-50 MiB activation maps, every later tensor below that size comes from the heap, whose free
space mostly stays resident. In ``bench_scaling`` that cost hundreds of MiB: resident set
706 MiB with 20 classes (475 MiB with the threshold fixed), and 617 MiB more while a
consolidation trained (369 MiB fixed).

Both thresholds are fixed here, from the measurements of a single-frame prediction (640x480
frame, 192 px, one thread; the same machine and run for each line):

- glibc's defaults: 39-40 ms before the first lesson, 34 ms after three. Before the lessons
  each frame took about 3,900 minor page faults (some 15 MiB faulted in again): the heap's
  top was given back to the system after every frame. The lessons' blocks left above it
  stopped that (no faults per frame after them).
- mmap threshold 16 MiB alone (which also pins the trim threshold at its 128 KiB default):
  48 ms and 34-39 ms; at 1 MiB 47 ms even after lessons, from the page faults of fresh maps.
- mmap threshold :data:`MMAP_THRESHOLD_BYTES` and trim threshold :data:`TRIM_THRESHOLD_BYTES`:
  32.5 ms before (81 faults per frame) and 33 ms after the lessons, and the large training
  maps still go back to the system when freed (the 100-class consolidation above).
"""

import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)

MMAP_THRESHOLD_BYTES = 16 * 2 ** 20
"""Blocks from this size up are mapped on their own and unmapped when freed (the per-frame
tensors stay below it)."""

TRIM_THRESHOLD_BYTES = 32 * 2 ** 20
"""Free space at the heap's top is given back to the system only beyond this size."""

_M_TRIM_THRESHOLD = -1  # <malloc.h>
_M_MMAP_THRESHOLD = -3


def _libc():
    name = ctypes.util.find_library('c')
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
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
