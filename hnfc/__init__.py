"""hnfc: a numerical-stability compiler for PyTorch.

Public surface: `trace` (model -> IR), `lower` (IR -> torch.fx.GraphModule), `reference`
(IR -> true outputs via mpmath), `bits_error` (bits of error of a float result against the truth),
`sample_inputs`, `save` (optimize and write a torch.export .pt2). Importing hnfc does not import torch; the torch-facing names load on first use.
"""

from __future__ import annotations

import importlib

# Eager, not lazy: once the submodule hnfc.reference is imported (`from hnfc.reference import
# Reference`), Python binds the package attribute `hnfc.reference` to the module and a lazy
# __getattr__ is never asked again. Binding the function here, after that import, keeps
# `hnfc.reference(program, inputs)` the function. It imports no torch.
from hnfc.reference import reference  # noqa: F401  (eager: see above)

_LAZY = {
    "trace": "hnfc.frontend",
    "FrontendError": "hnfc.frontend",
    "lower": "hnfc.lowering",
    "optimize": "hnfc.pipeline",
    "HnfcWarning": "hnfc.pipeline",
    "bits_error": "hnfc.metric",
    "sample_inputs": "hnfc.metric",
    "check_rules": "hnfc.rewrites.check",
    "save": "hnfc.export",
    "report_html": "hnfc.htmlreport",
}

__all__ = sorted([*_LAZY, "reference"])
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hnfc' has no attribute {name!r}")
