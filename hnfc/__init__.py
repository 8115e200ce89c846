"""hnfc: a numerical-stability compiler for PyTorch.

Public surface: `trace` (model -> IR), `lower` (IR -> torch.fx.GraphModule), `reference`
(IR -> true outputs via mpmath), `bits_error` (bits of error of a float result against the truth),
`sample_inputs`, `optimize`, `save` (optimize and write a torch.export .pt2), `check_rules`,
`report_html`, `Config` (the options). The package's layers, bottom up: foundation, ops, ir,
numerics and analysis, rewrites, egraph, frontend and runtime, verify and precision, report,
pipeline; then the consumers backend, export, cli, lint (README: Layout). Importing hnfc does not import torch; the torch-facing names load on first use.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "reference": "hnfc.numerics.reference",
    "Config": "hnfc.foundation.config",
    "trace": "hnfc.frontend.tracing",
    "FrontendError": "hnfc.frontend.tracing",
    "lower": "hnfc.runtime.lowering",
    "optimize": "hnfc.pipeline",
    "HnfcWarning": "hnfc.pipeline",
    "bits_error": "hnfc.numerics.metric",
    "sample_inputs": "hnfc.numerics.metric",
    "check_rules": "hnfc.rewrites.check",
    "save": "hnfc.export",
    "report_html": "hnfc.report.html",
}

__all__ = sorted(_LAZY)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hnfc' has no attribute {name!r}")
