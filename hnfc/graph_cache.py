"""Whole-graph results of the torch.compile backend, kept on disk (as inductor's FX graph cache).

In: the GraphModule dynamo hands the backend, its example inputs (parameters included), the
backend's options. Out: `graph_key` (a hex digest, or None where a graph cannot be keyed
soundly), `load_graph` (the optimized IR program with its report, or None) and `store_graph`.
It sits on top, beside hnfc/backend.py, its only user: a hit skips tracing and every stage of
`optimize_program` (ranges, e-graph, verification, precision, legalization); lowering and
inductor still run.

The key covers everything the result is a function of:
- the graph: its Python code (`gm.code`: every node, its target, arguments and constants), the
  repr of each submodule it calls, and the value of every tensor it holds (parameters, buffers,
  get_attr constants); a call to a function outside torch / operator / math / builtins (a user
  function dynamo kept in the graph) makes the graph unkeyed, since its body is not in the code;
- each example input (dynamo's lifted parameters included): dtype, shape, strides, device,
  requires_grad and a SHA-256 of its bytes (every element: the observed ranges, the sampled
  domains and the verdicts depend on the values);
- the mode the graph is traced in: grad enabled, autocast;
- the backend's options: every `Config` field, the input ranges, the user's rules (their repr);
- the versions: a SHA-256 of hnfc's own source files (the rule library, the op table, every
  stage: any edit is a new key), torch's version, this format's `VERSION`.
Not in the key, on purpose: thread count and load. Stages bounded by time (the e-graph's
`time_limit`) may stop elsewhere on another run; a hit returns one run's result, every rewrite
in it verified by that run. A run that raised an HnfcWarning (a stage failed, a fallback) is not
stored, so a passing failure is not kept.

Where: `$HNFC_CACHE_DIR/graphs`, else `~/.cache/hnfc/graphs` (`$XDG_CACHE_HOME` honoured): one
pickle per key, `<structure digest>/<full digest>.pkl`, written atomically (a structure never
stored is a miss known without hashing a byte: the tensors are then hashed in a background thread
while the pipeline runs, so a cold compile does not wait for the key); the parameter tensors are not stored (they are the example
inputs of the next call, by position). `Config.cache=False` (option `cache`) turns it off, as it
does the verdict cache. An unreadable entry is a miss; an unwritable directory is skipped.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import MappingProxyType
from typing import Any, Sequence

from hnfc.foundation.files import atomic_path, cache_home

VERSION = "graph-1"  # bump when the stored form changes
_TRUSTED = ("torch", "operator", "_operator", "math", "builtins")


def cache_dir() -> Path:
    return (Path(os.environ["HNFC_CACHE_DIR"]) if os.environ.get("HNFC_CACHE_DIR") else cache_home()) / "graphs"


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """SHA-256 over hnfc's Python sources (path and bytes, sorted): the code and rule set version."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()


def _check_keyable(x) -> None:
    import torch

    if not isinstance(x, torch.Tensor):
        raise TypeError(f"not a tensor: {type(x).__name__}")
    if x.layout != torch.strided or x.is_quantized or x.device.type == "meta" or (type(x) is not torch.Tensor and not isinstance(x, torch.nn.Parameter)):
        raise TypeError("only dense tensors are keyed")


def tensor_digest(x) -> str:
    """SHA-256 of a dense tensor's metadata and every byte of its values."""
    import torch

    _check_keyable(x)
    h = hashlib.sha256(repr((str(x.dtype), tuple(x.shape), x.stride(), str(x.device), x.requires_grad)).encode())
    flat = x.detach().reshape(-1)
    if flat.device.type != "cpu":
        flat = flat.cpu()
    h.update(memoryview(flat.contiguous().view(torch.uint8).numpy()))  # hashlib drops the GIL here
    return h.hexdigest()


class GraphKey:
    """A backend call's key in two parts: `structure` (everything but the tensors' bytes: cheap)
    and the digests of every tensor (`full`: reads every byte). Entries are kept per structure,
    so a structure never stored is a miss known before any byte is hashed; its full key is then
    computed in a background thread (`full_async`: hashlib drops the GIL) while the pipeline runs."""

    _pool = ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1), thread_name_prefix="hnfc-graph-key")

    def __init__(self, structure: str, tensors: list) -> None:
        self.structure = structure
        self.tensors = tensors

    def maybe_stored(self) -> bool:
        return (cache_dir() / self.structure).is_dir()

    def full(self) -> str:
        digests = list(self._pool.map(tensor_digest, self.tensors))
        return self.structure + "/" + hashlib.sha256(repr(digests).encode()).hexdigest()

    def full_async(self):
        return self._pool.submit(self.full)


def graph_key(gm, example_inputs: Sequence, opts, rules: Any = None) -> GraphKey | None:
    """The cache key of one backend call (module doc), or None where it cannot be keyed soundly."""
    import dataclasses

    import torch

    try:
        for node in gm.graph.nodes:
            if node.op == "call_function" and not isinstance(node.target, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)):
                module = (getattr(node.target, "__module__", None) or "").split(".")[0]
                if module not in _TRUSTED:
                    return None
        tensors = list(example_inputs) + [t for _, t in sorted(gm.state_dict(keep_vars=True).items())]
        tensors += [_attr(gm, n.target) for n in gm.graph.nodes if n.op == "get_attr" and isinstance(_attr(gm, n.target), torch.Tensor)]
        for t in tensors:
            _check_keyable(t)
        shapes = [(str(t.dtype), tuple(t.shape), t.stride(), str(t.device), t.requires_grad) for t in tensors]
        modules = sorted((n.target, repr(gm.get_submodule(n.target))) for n in gm.graph.nodes if n.op == "call_module")
        config = {f.name: getattr(opts.config, f.name) for f in dataclasses.fields(opts.config)}
        parts = [
            VERSION, source_digest(), torch.__version__, gm.code, modules, shapes,
            torch.is_grad_enabled(), torch.is_autocast_enabled(), repr(sorted(config.items())),
            repr(sorted((repr(k), tuple(v)) for k, v in (opts.input_ranges or {}).items())), repr(rules), opts.inductor,
        ]
    except Exception:  # anything unkeyable: no cache, never a failure
        return None
    return GraphKey(hashlib.sha256(repr(parts).encode()).hexdigest(), tensors)


def _attr(gm, target: str):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part, None)
    return obj


def store_graph(key: str, program, report, example_inputs: Sequence) -> bool:
    """Keep the optimized program and its report under `key`; parameters that are example inputs
    are stored by position. False where it could not be written (it only saves time)."""
    by_id = {id(x): k for k, x in enumerate(example_inputs)}
    params = {name: ("input", by_id[id(v)]) if id(v) in by_id else ("value", v) for name, v in program.params.items()}
    entry = {"nodes": program.nodes, "outputs": program.outputs, "params": params, "meta": dict(program.meta), "report": report}
    directory = cache_dir()
    try:
        data = pickle.dumps((VERSION, key, entry), protocol=pickle.HIGHEST_PROTOCOL)
        path = directory / f"{key}.pkl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        return True
    except Exception:
        return False


def load_graph(key: str, example_inputs: Sequence):
    """(program, report) stored under `key`, its parameters bound to `example_inputs`; None on a miss."""
    from hnfc.ir.program import Program

    try:
        version, stored, entry = pickle.loads((cache_dir() / f"{key}.pkl").read_bytes())
        if version != VERSION or stored != key:
            return None
        params = {name: example_inputs[v] if how == "input" else v for name, (how, v) in entry["params"].items()}
        program = Program(tuple(entry["nodes"]), tuple(entry["outputs"]), MappingProxyType(params), MappingProxyType(entry["meta"]))
        return program, entry["report"]
    except Exception:
        return None


__all__ = ["VERSION", "GraphKey", "cache_dir", "graph_key", "load_graph", "source_digest", "store_graph", "tensor_digest"]
