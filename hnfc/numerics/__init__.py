"""Numerics: the ground truth (`reference`: an IR program evaluated over the reals with mpmath,
correctly rounded) and the metric (`bits_error`, `sample_inputs`). Sits above the IR, below
analysis, rewrites and verification."""
