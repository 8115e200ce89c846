"""Verdicts of local verification, kept: identical sites are judged once, in a run and across runs.

In: the e-graph stage's `Change` records and the config. Out: `Verdicts`, which answers a change
from an earlier judgement of the same site and stores new ones. A site is the same when its
region's key (structure, types and ranges rounded outward to powers of two: what the optimizer
saw), its old and new expression and the judge's settings are; the key also holds hnfc's
version, so a new release judges again. Identical regions (a transformer's repeated blocks) are
thus verified once, a re-extraction does not re-verify the sites it did not touch, and a second
compile of the same model in a new process reads its verdicts from disk, as inductor's FX graph
cache does.

Where: `$HNFC_CACHE_DIR`, else `$XDG_CACHE_HOME/hnfc/verified`, else `~/.cache/hnfc/verified`; one
small JSON file per verdict, written atomically. `Config.cache=False` turns the disk cache off
(the in-run memo stays). Where the directory cannot be written, the cache is skipped silently:
it only saves time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

from hnfc import __version__
from hnfc.egraph.changes import Change
from hnfc.foundation.config import Config
from hnfc.foundation.files import atomic_path, cache_home
from hnfc.verify.judge import LocalCheck

VERSION = f"hnfc-{__version__}/verdict-3"  # 2: a rewrite must gain; sites fed domain points; 3: a wide one must gain 0.5 bit
# (bump the suffix when the judge's meaning changes)
JUDGE_FIELDS = ("samples", "seed", "tolerance_mean_bits", "tolerance_max_bits", "max_reference_ops")


def cache_dir() -> Path:
    """Where verdicts are kept (module doc)."""
    if os.environ.get("HNFC_CACHE_DIR"):
        return Path(os.environ["HNFC_CACHE_DIR"])
    return cache_home() / "verified"


def site_key(change: Change, config: Config) -> str:
    """What makes two sites the same to the judge, as a hex digest."""
    parts = [VERSION, repr(change.key), str(change.old), str(change.new), str(change.base), [getattr(config, f) for f in JUDGE_FIELDS]]
    return hashlib.sha256(json.dumps(parts, default=repr).encode()).hexdigest()


_NUMBERS = ("before_mean", "before_max", "after_mean", "after_max", "accepted", "reason")


class Verdicts:
    """One run's memo of judged sites, backed by the disk cache when `config.cache`."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.memo: dict[str, dict] = {}
        self.directory = cache_dir() if config.cache else None
        self.hits = 0
        self._keys: dict[int, tuple[Change, str]] = {}  # id -> (change, its site_key): asked for up to 3 times a round

    def key(self, change: Change) -> str:
        """`site_key(change, config)`, computed once per change (it formats three programs)."""
        held = self._keys.get(id(change))
        if held is None or held[0] is not change:  # the change is held, so its id is not reused meanwhile
            held = self._keys[id(change)] = (change, site_key(change, self.config))
        return held[1]

    def get(self, change: Change) -> LocalCheck | None:
        key = self.key(change)
        found = self.memo.get(key)
        if found is None and self.directory is not None:
            try:
                found = json.loads((self.directory / f"{key}.json").read_text())
            except (OSError, ValueError):
                found = None
            if found is not None and set(found) != set(_NUMBERS):
                found = None
        if found is None:
            return None
        self.memo[key] = found
        self.hits += 1
        return LocalCheck(change.region, change.key, change.cls, change.values, **found)

    def put(self, change: Change, check: LocalCheck) -> None:
        key = self.key(change)
        numbers = {k: v for k, v in dataclasses.asdict(check).items() if k in _NUMBERS}
        self.memo[key] = numbers
        if self.directory is None:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.directory / f"{key}.json") as tmp:
                tmp.write_text(json.dumps(numbers))
        except OSError:
            pass  # a cache that cannot be written only costs time
