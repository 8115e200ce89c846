"""E-graph stage: saturate a program with the rule library in egglog, extract minimal curvature."""

from hnfc.egraph.extract import Extraction, extract
from hnfc.egraph.saturate import Applied, Limits, Saturated, saturate

__all__ = ["Applied", "Extraction", "Limits", "Saturated", "extract", "saturate"]
