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
    region_nodes: int = 200  # larger programs are optimized region by region (limits per region)
    # ranges
    margin: float = 0.1  # widening of observed ranges, relative to their width
    # verification
    verify: bool = True
    samples: int = 4  # sampled input sets besides the example inputs
    seed: int = 0
    tolerance_mean_bits: float = 0.05  # an output may not get worse than this on average
    tolerance_max_bits: float = 1.0  # nor worse than this at its worst element
    max_reference_ops: int = 20_000_000  # mpmath operations per verification run; beyond: not verifiable
    measure_outputs: bool = True  # also measure whole outputs when affordable (a second judge after
    # the local checks, and the report's per-output bits); the backend turns it off: compile time
    # precision assignment (hnfc/precision.py) -- begin
    target: float | None = None  # normwise relative error per output, |y - y_true|inf / |y_true|inf; None = stage off
    dtypes: tuple[str, ...] | None = None  # dtype menu (short names); None = by device (CPU bf16/f32/f64, CUDA +f16)
    max_promotions: int = 6  # validation rounds that promote nodes one step up the menu
    precision_margin: float = 0.0  # bits added to every node's requirement
    demote: bool = True  # after the target is met, try lowering the nodes kept high, one at a time, by measurement
    # precision assignment -- end
    trust_rules: bool = False  # user rules skip the soundness check (hnfc/rewrites/packs.py checked); the report says so
    legalize: bool = True  # finite constants that round to ±inf in their node's final dtype -> ±finfo.max (hnfc/legalize.py)

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None = None, **kw) -> "Config":
        merged = {**(options or {}), **kw}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise ValueError(f"unknown hnfc option(s) {unknown}; known options: {sorted(known)}")
        if "families" in merged and merged["families"] is not None:
            merged["families"] = tuple(merged["families"])
        if merged.get("dtypes") is not None:  # torch dtypes or names -> short names ("bf16")
            from hnfc.precision import dtype_name

            menu = merged["dtypes"]
            merged["dtypes"] = tuple(dtype_name(d) for d in ((menu,) if isinstance(menu, str) or not hasattr(menu, "__iter__") else menu))
        cfg = cls(**merged)
        cfg.check()
        return cfg

    def check(self) -> None:
        if self.max_nodes <= 0 or self.max_iterations <= 0 or self.time_limit <= 0:
            raise ValueError("max_nodes, max_iterations and time_limit must be positive")
        if self.samples < 0 or self.margin < 0:
            raise ValueError("samples and margin must not be negative")
        if self.target is not None and not 0 < self.target < 1:
            raise ValueError(f"target must be a relative error in (0, 1), got {self.target}")
        if self.dtypes is not None and not self.dtypes:
            raise ValueError("dtypes: the menu may not be empty")
        if self.max_promotions < 0:
            raise ValueError("max_promotions must not be negative")
