"""Offline rewrite: optimize a module once and save it as a torch.export `.pt2` archive.

    ep = hnfc.save(model, "model.pt2", example_inputs, input_ranges={0: (-4, 4)})
    # later, anywhere (hnfc not needed; a file you wrote yourself):
    ep = torch.export.load("model.pt2");  y = ep.module()(x)
    # a file from elsewhere: hnfc.export.load refuses archives that hold pickles
    ep = hnfc.export.load("model.pt2")

In: a module (or function) and example inputs, or a module `hnfc.optimize` already returned.
Out: the `.pt2` file and the `torch.export.ExportedProgram` written to it. Every call node of the
exported graph carries `node.meta["custom"] = {"hnf_op": ..., "hnf_dtype": ...}` (torch.export
keeps the `custom` key through save/load; nodes torch.export creates itself get the metadata of
the lowered node they come from, re-attached in order where torch.export left them without it).
The optimizer's report is stored in the archive as the extra file `hnfc/report.json`. `read(path)`
gives the report and the per-node table back from the archive's JSON alone, loading no weight
(`hnfc show` uses it); `load(path)` gives the ExportedProgram, refusing archives that hold pickles
(torch.export.load would unpickle them, running whatever code they carry).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import zipfile
import warnings
from pathlib import Path
from typing import Any

import torch

from hnfc.foundation.files import atomic_path

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
    report travels inside it (`read(path).report`). The file is written whole or not at all (a
    temporary file in the same directory, then `os.replace`). Returns the ExportedProgram.
    """
    ep, report = export(module, example_inputs, input_ranges=input_ranges, rules=rules, **options)
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise FileNotFoundError(f"directory {str(path.parent)!r} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"{str(path)!r} is a directory")
    with atomic_path(path) as tmp:
        write_archive(ep, report, tmp)
    return ep


def write_archive(ep, report, path) -> None:
    """torch.export.save `ep` to `path` with the report as the extra file REPORT_FILE."""
    payload = {"format": FORMAT, "report": report.to_dict() if report is not None and not isinstance(report, dict) else report}
    torch.export.save(ep, os.fspath(path), extra_files={REPORT_FILE: json.dumps(payload, default=str)})


@dataclasses.dataclass
class Saved:
    """What `read` finds in an archive, from its JSON alone (no weight is loaded)."""

    path: Path
    report: dict | None  # Report.to_dict() as saved, or None for a .pt2 hnfc did not write
    nodes: list[dict]  # one per call node: name, target, hnf_op, hnf_dtype (None when absent)
    inputs: list[str]  # the user inputs' names
    outputs: int  # how many user outputs

    def dtypes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for n in self.nodes:
            if n["hnf_dtype"] is not None:
                out[n["hnf_dtype"]] = out.get(n["hnf_dtype"], 0) + 1
        return out

    def load(self):
        """The ExportedProgram, through `load` (refuses archives that hold pickles)."""
        return load(self.path)


# ---------------------------------------------------------------------------------------------
# Reading archives without running code. torch.export.load unpickles any weight or constant the
# archive marks `use_pickle` (weights_only=False), custom and opaque objects, and sample inputs
# that the safe unpickler refuses: a crafted .pt2 runs code on load. `read` parses the archive's
# JSON only; `load` checks that nothing in the archive needs a pickle before torch loads it.

_MODEL = "models/model.json"
_WEIGHTS_CONFIG = "data/weights/"
_CONSTANTS = "data/constants/"
_SAMPLE_INPUTS = "data/sample_inputs/"
_EXTRA = "extra/"


class _Archive:
    """A .pt2 zip read into memory (one read, so what is checked is what gets loaded): its
    entries relative to the archive's root folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = path.read_bytes()
        try:
            zf = zipfile.ZipFile(io.BytesIO(self.data))
            names = zf.namelist()
        except (zipfile.BadZipFile, ValueError, OSError) as e:
            raise ValueError(f"{str(path)!r} is not a torch.export .pt2 archive (not a zip file: {e})") from None
        roots = {n.split("/", 1)[0] for n in names}
        if len(roots) != 1 or any("/" not in n for n in names):
            raise ValueError(f"{str(path)!r} is not a torch.export .pt2 archive (entries outside one root folder)")
        self.root = roots.pop() + "/"
        self.zip = zf
        self.names = [n[len(self.root):] for n in names]
        if self.text("archive_format", "").strip() != "pt2" or _MODEL not in self.names:
            raise ValueError(f"{str(path)!r} is not a torch.export .pt2 archive (no archive_format 'pt2' or no {_MODEL})")

    def bytes(self, name: str) -> bytes:
        return self.zip.read(self.root + name)

    def text(self, name: str, default: str | None = None) -> str:
        if name not in self.names:
            if default is None:
                raise ValueError(f"{str(self.path)!r}: the archive has no {name}")
            return default
        return self.bytes(name).decode("utf-8", errors="replace")

    def json(self, name: str):
        try:
            return json.loads(self.text(name))
        except ValueError as e:
            raise ValueError(f"{str(self.path)!r}: {name} is not valid JSON ({e})") from None

    def pickles(self) -> list[str]:
        """Every entry torch.export.load would unpickle without the safe loader, in words."""
        found = []
        for name in self.names:
            if name.endswith("_config.json") and (name.startswith(_WEIGHTS_CONFIG) or name.startswith(_CONSTANTS)):
                config = self.json(name).get("config") or {}
                for fqn, meta in config.items():
                    if not isinstance(meta, dict):
                        found.append(f"{name}: entry {fqn!r} is not an object")
                    elif meta.get("use_pickle"):
                        found.append(f"{fqn!r} is stored as a pickle ({name})")
                    elif name.startswith(_CONSTANTS) and not str(meta.get("path_name", "")).startswith("tensor_"):
                        found.append(f"constant {fqn!r} is a pickled object ({meta.get('path_name')!r})")
            elif name.startswith(_SAMPLE_INPUTS) and name.endswith(".pt"):
                try:  # torch falls back to weights_only=False when this fails: refuse instead
                    torch.load(io.BytesIO(self.bytes(name)), weights_only=True)
                except Exception as e:
                    found.append(f"{name} does not load with weights_only=True ({type(e).__name__})")
        return found


def _first_output_name(node: dict) -> str | None:
    outs = node.get("outputs") or []
    arg = outs[0] if outs and isinstance(outs[0], dict) else {}
    tensor = arg.get("as_tensor")
    return tensor.get("name") if isinstance(tensor, dict) else None


def _graph_table(model: dict) -> tuple[list[dict], list[str], int]:
    """(one row per call node, the user inputs' names, the number of user outputs) from the
    serialized ExportedProgram (torch's schema: graph_module.graph.nodes and .signature)."""
    gm = model["graph_module"]
    graph, signature = gm["graph"], gm["signature"]
    nodes = []
    for i, n in enumerate(graph["nodes"]):
        meta = n.get("metadata") or {}
        try:
            custom = json.loads(meta["custom"]) if "custom" in meta else {}
        except (ValueError, TypeError):
            custom = {}
        custom = custom if isinstance(custom, dict) else {}
        name = n.get("name") or _first_output_name(n) or f"node{i}"
        target = str(n.get("target", "?")).removeprefix("torch.ops.")
        nodes.append({"name": str(name), "target": target, "hnf_op": custom.get("hnf_op"), "hnf_dtype": custom.get("hnf_dtype")})
    inputs = [s["user_input"]["arg"].get("as_tensor", {}).get("name", "?") for s in signature.get("input_specs", []) if "user_input" in s]
    outputs = sum("user_output" in s for s in signature.get("output_specs", []))
    return nodes, inputs, outputs


def read(path) -> Saved:
    """The hnfc report and the per-node table of a `.pt2`, parsed from the archive's JSON
    (models/model.json and extra/hnfc/report.json); no weight is loaded, no code runs.
    FileNotFoundError if there is no such file, ValueError if it is not a .pt2 archive."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {str(path)!r}")
    archive = _Archive(path)
    try:
        nodes, inputs, outputs = _graph_table(archive.json(_MODEL))
    except (KeyError, TypeError, AttributeError, IndexError):
        raise ValueError(f"{str(path)!r}: {_MODEL} is not a torch.export graph") from None
    report = None
    if _EXTRA + REPORT_FILE in archive.names:
        try:
            stored = json.loads(archive.text(_EXTRA + REPORT_FILE))
            report = stored.get("report") if isinstance(stored, dict) else None
        except ValueError:
            report = None
    return Saved(path, report if isinstance(report, dict) else None, nodes, inputs, outputs)


def load(path):
    """The ExportedProgram in a `.pt2`, loaded only if nothing in it needs a pickle: weights and
    constants as raw tensor bytes, sample inputs through torch's weights-only unpickler. An
    archive that holds pickles (which torch.export.load would run) raises ValueError naming them.
    The graph itself is torch's JSON, read by torch's deserializer."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {str(path)!r}")
    archive = _Archive(path)
    bad = archive.pickles()
    if bad:
        raise ValueError(f"refusing to load {str(path)!r}: it holds pickled data, which loading would run as code: {'; '.join(bad[:3])}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.export.load(io.BytesIO(archive.data))
    except Exception as e:
        raise ValueError(f"{str(path)!r} is not a loadable torch.export .pt2 archive ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


__all__ = ["REPORT_FILE", "Saved", "export", "load", "read", "save", "write_archive"]
