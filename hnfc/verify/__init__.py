"""Verification, the judge: whole outputs (`measure`) and each rewrite on its neighbourhood
(`local_checks`), in bits of error against the reference. Above runtime and the e-graph stage's
change records; beside precision; below the report."""

from hnfc.verify.judge import LocalCheck, OutputError, bit_histogram, fewer_rows, local_checks, measure, reference_cost

__all__ = ["LocalCheck", "OutputError", "bit_histogram", "fewer_rows", "local_checks", "measure", "reference_cost"]
