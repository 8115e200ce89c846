"""Offline rewrite: optimize a module once and save it as a torch.export `.pt2` archive.

    ep = hnfc.save(model, "model.pt2", example_inputs, input_ranges={0: (-4, 4)})
    # later, anywhere (hnfc not needed):
    ep = torch.export.load("model.pt2");  y = ep.module()(x)

In: a module (or function) and example inputs, or a module `hnfc.optimize` already returned.
Out: the `.pt2` file and the `torch.export.ExportedProgram` written to it. Every call node of the
exported graph carries `node.meta["custom"] = {"hnf_op": ..., "hnf_dtype": ...}` (torch.export
keeps the `custom` key through save/load; nodes torch.export creates itself get the metadata of
the lowered node they come from, re-attached in order where torch.export left them without it).
The optimizer's report is stored in the archive as the extra file `hnfc/report.json`; `read(path)`
gives the program, the report and the per-node table back (`hnfc show` uses it).
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch

REPORT_FILE = "hnfc/report.json"
FORMAT = 1


def _is_optimized(module) -> bool:
    return isinstance(module, torch.nn.Module) and hasattr(module, "report") and (hasattr(module, "program") or hasattr(module, "model"))


def _custom(node) -> dict | None:
    c = node.meta.get("custom")
    return c if isinstance(c, dict) and "hnf_dtype" in c else None


def _reattach(source: torch.fx.GraphModule, ep) -> int:
    """Copy `custom` metadata onto exported call nodes that lost it, matching nodes by target in
    order. Returns how many exported call nodes still have none."""
    pending: dict[Any, list[dict]] = {}
    for n in source.graph.nodes:
        if n.op == "call_function" and _custom(n) is not None:
            pending.setdefault(n.target, []).append(n.meta["custom"])
    missing = 0
    for n in ep.graph.nodes:
        if n.op != "call_function":
            continue
        queue = pending.get(n.target)
        if _custom(n) is not None:
            if queue:
                queue.pop(0)
            continue
        if queue:
            n.meta["custom"] = dict(queue.pop(0))
        elif not str(n.target).startswith("<built-in function getitem"):
            missing += 1
    return missing


def export(module, example_inputs, *, input_ranges=None, rules=None, **options):
    """Optimize `module` (unless it is already an hnfc result) and torch.export it.
    Returns (ExportedProgram, report)."""
    from hnfc.pipeline import optimize

    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    example_inputs = tuple(example_inputs)
    if _is_optimized(module):
        if options or input_ranges is not None or rules is not None:
            raise ValueError("the module is already optimized (it has a .report); pass the original module to optimize with options")
        optimized = module
    else:
        optimized = optimize(module, example_inputs, input_ranges=input_ranges, rules=rules, **options)
    report = optimized.report
    ep = torch.export.export(optimized, example_inputs)
    if isinstance(optimized, torch.fx.GraphModule):
        _reattach(optimized, ep)
    return ep, report


def save(module, path, example_inputs, *, input_ranges=None, rules=None, **options):
    """Optimize `module` on `example_inputs` and write a torch.export `.pt2` to `path`.

    `input_ranges`, `rules` and the options are `hnfc.optimize`'s. A module `hnfc.optimize`
    already returned is exported as is. The archive loads with plain `torch.export.load`; the
    report travels inside it (`read(path).report`). Returns the ExportedProgram.
    """
    ep, report = export(module, example_inputs, input_ranges=input_ranges, rules=rules, **options)
    payload = {"format": FORMAT, "report": report.to_dict() if report is not None else None}
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise FileNotFoundError(f"directory {str(path.parent)!r} does not exist")
    torch.export.save(ep, os.fspath(path), extra_files={REPORT_FILE: json.dumps(payload, default=str)})
    return ep


@dataclasses.dataclass
class Saved:
    program: Any  # torch.export.ExportedProgram
    report: dict | None  # Report.to_dict() as saved, or None for a .pt2 hnfc did not write
    nodes: list[dict]  # one per call node: name, target, hnf_op, hnf_dtype (None when absent)

    def dtypes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for n in self.nodes:
            if n["hnf_dtype"] is not None:
                out[n["hnf_dtype"]] = out.get(n["hnf_dtype"], 0) + 1
        return out


def read(path) -> Saved:
    """Load a `.pt2` and the hnfc report stored in it (FileNotFoundError, ValueError if unreadable)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {str(path)!r}")
    extra = {REPORT_FILE: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ep = torch.export.load(os.fspath(path), extra_files=extra)
    except Exception as e:
        raise ValueError(f"{str(path)!r} is not a torch.export .pt2 archive ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    report = None
    if extra.get(REPORT_FILE):
        try:
            report = json.loads(extra[REPORT_FILE]).get("report")
        except (ValueError, AttributeError):
            report = None
    nodes = []
    for n in ep.graph.nodes:
        if n.op != "call_function":
            continue
        c = n.meta.get("custom") if isinstance(n.meta.get("custom"), dict) else {}
        nodes.append({"name": n.name, "target": str(n.target), "hnf_op": c.get("hnf_op"), "hnf_dtype": c.get("hnf_dtype")})
    return Saved(ep, report, nodes)


__all__ = ["REPORT_FILE", "Saved", "export", "read", "save"]
