"""The frozen configuration every stage reads (no global state): `Config(**options)`.

Unknown option names are an error that lists the known ones, so a typo in
`hnfc.optimize(..., max_nodez=...)` or `options={...}` never passes silently.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping


@dataclass(frozen=True)
class Config:
    # e-graph
    max_nodes: int = 20_000  # e-node limit per saturation
    max_iterations: int = 12  # per phase of the schedule
    time_limit: float = 20.0  # seconds of saturation
    families: tuple[str, ...] | None = None  # rule families to use (first tag); None = all
    # ranges
    margin: float = 0.1  # widening of observed ranges, relative to their width
    # verification
    verify: bool = True
    samples: int = 4  # sampled input sets besides the example inputs
    seed: int = 0
    tolerance_mean_bits: float = 0.05  # an output may not get worse than this on average
    tolerance_max_bits: float = 1.0  # nor worse than this at its worst element
    max_reference_elements: int = 200_000  # larger outputs are verified on a slice of rows

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None = None, **kw) -> "Config":
        merged = {**(options or {}), **kw}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise ValueError(f"unknown hnfc option(s) {unknown}; known options: {sorted(known)}")
        if "families" in merged and merged["families"] is not None:
            merged["families"] = tuple(merged["families"])
        cfg = cls(**merged)
        cfg.check()
        return cfg

    def check(self) -> None:
        if self.max_nodes <= 0 or self.max_iterations <= 0 or self.time_limit <= 0:
            raise ValueError("max_nodes, max_iterations and time_limit must be positive")
        if self.samples < 0 or self.margin < 0:
            raise ValueError("samples and margin must not be negative")
