"""Files hnfc writes: where its caches live, and writing a file whole or not at all.

In: paths. Out: the cache directory and a context manager for atomic replacement. Used by the
verdict cache (hnfc/verify/cache.py), the backend's graph cache (hnfc/graph_cache.py) and
`hnfc.save` (hnfc/export.py).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def cache_home() -> Path:
    """hnfc's caches by default: `$XDG_CACHE_HOME/hnfc`, else `~/.cache/hnfc` (`$HNFC_CACHE_DIR`,
    where set, is each cache's own business)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hnfc"


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path next to `path`; on a clean exit it replaces `path` (os.replace, so
    readers see the old file or the new one, never half of one); on an error it is removed."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent if str(path.parent) else ".")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


__all__ = ["atomic_path", "cache_home"]
