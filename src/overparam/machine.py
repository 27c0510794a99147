"""What this machine has, for refusing work that cannot fit before allocating it."""

from __future__ import annotations

import os

MEMORY_FRACTION = 0.8  # refuse runs (and data files) estimated to need more than this share of physical memory


def physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30
