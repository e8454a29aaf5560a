"""The benchmark suite's package (``bench/`` at the repository's root) on the import path.

No ``__init__.py`` here on purpose: it would make this folder a top-level package named
``bench`` and hide the suite's.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
