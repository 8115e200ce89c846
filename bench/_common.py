"""What every benchmark script shares: its command line (--quick, --out) and how one benchmark's
results are written (STEM.json, STEM.md and, from run_all.py, STEM.log), so every script runs
alone with the same options and run_all.py finds the files where it expects them.

Imported as `_common` (bench/ is not a package; a script's own folder is first on sys.path).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"  # absolute: the default does not depend on the cwd


def fresh_caches() -> str:
    """Point hnfc's on-disk caches (verdicts, whole graphs) at a new empty directory for this
    process, so a benchmark's times are cold whatever earlier runs left in ~/.cache/hnfc."""
    path = tempfile.mkdtemp(prefix="hnfc-bench-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)  # the process's caches go with it
    os.environ["HNFC_CACHE_DIR"] = path
    return path


def arguments(doc: str, quick_help: str) -> argparse.ArgumentParser:
    """A parser with --quick and --out (default bench/results); a script adds its own options."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"directory for the results (default {RESULTS})")
    return ap


def write_results(out: Path, stem: str, *, data: dict | None = None, markdown: str | None = None, log: str | None = None) -> list[Path]:
    """Write out/STEM.json (`data`, indented), out/STEM.md (`markdown` and a newline) and
    out/STEM.log, those given, creating `out`; return their paths in that order."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    texts = {
        "json": None if data is None else json.dumps(data, indent=2),
        "md": None if markdown is None else markdown + "\n",
        "log": log,
    }
    paths = []
    for ext, text in texts.items():
        if text is not None:
            paths.append(out / f"{stem}.{ext}")
            paths[-1].write_text(text)
    return paths
