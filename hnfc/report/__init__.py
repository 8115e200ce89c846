"""The report: records of what the pipeline did (`Report`, `Rewrite`) and their HTML page
(`report_html`, which renders only data it is given). Above verify and precision, below the pipeline."""

from hnfc.report.html import render, report_html
from hnfc.report.records import Report, Rewrite, legalization_rewrite

__all__ = ["Report", "Rewrite", "legalization_rewrite", "render", "report_html"]
