"""Frontend: a torch model, function or dynamo FX graph -> hnfc's IR (`trace`, `trace_graph_module`).
Sits above the e-graph layer, beside runtime (the way back)."""

from hnfc.frontend.tracing import FrontendError, trace, trace_graph_module

__all__ = ["FrontendError", "trace", "trace_graph_module"]
