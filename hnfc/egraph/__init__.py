"""E-graph stage: saturate a program with the rule library in egglog, extract minimal curvature."""

from hnfc.egraph.extract import Extraction, extract
from hnfc.egraph.regions import Region, RegionResult, optimize_regions, partition
from hnfc.egraph.saturate import Applied, Limits, Saturated, saturate

__all__ = ["Applied", "Extraction", "Limits", "Region", "RegionResult", "Saturated", "extract", "optimize_regions", "partition", "saturate"]
