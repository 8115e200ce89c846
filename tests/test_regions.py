"""Regions: partition at narrow cuts, optimize each distinct region once, stitch back exactly."""

from __future__ import annotations

import torch

import hnfc
from hnfc import analysis
from hnfc.egraph import Limits, optimize_regions, partition
from hnfc.rewrites import library
from hnfc.rewrites.compile import compile_rules
from hnfc.runtime import observe
from tests.corpus import build

RULES = compile_rules(library())


def blocks(x):
    for _ in range(4):  # four identical blocks joined by one value; after the first, each
        x = torch.sigmoid(torch.log(1 + torch.exp(x)))  # sees inputs in [0.7, 0.8]
    return x


def test_partition_covers_each_node_once_and_cuts_between_blocks():
    p = hnfc.trace(blocks, (torch.randn(8),))
    regions = partition(p, max_nodes=12)
    covered = [v for r in regions for v in r.nodes]
    assert covered == [i for i, n in enumerate(p.nodes) if n.op not in ("input", "param", "const")]
    assert all(len(r.nodes) <= 12 for r in regions)
    assert all(len(r.inputs) == 1 for r in regions[1:])  # the cut falls where one value crosses


def test_identical_regions_are_optimized_once_and_stitched_exactly():
    x = torch.linspace(-3, 3, 8)
    p = hnfc.trace(blocks, (x,))
    ranges = analysis.ranges(p, {0: (-3.0, 3.0)}, observed=observe(p, [[x]]))
    whole, _ = optimize_regions(p, ranges, RULES, Limits(), max_region_nodes=10_000)
    pieces, results = optimize_regions(p, ranges, RULES, Limits(), max_region_nodes=4)  # one block each
    assert len(results) == 4 and sum(r.reused for r in results) >= 2
    assert str(pieces) == str(whole)
    # only the first block (inputs in [-3, 3]) gains from softplus; the others see [0.7, 0.8]
    assert [n.op for n in pieces.nodes].count("softplus") == 1


def test_region_by_region_gpt2_matches_the_model():
    model, inputs = build("gpt2_eager")
    m = hnfc.optimize(model, inputs, region_nodes=40, samples=1)
    assert m.report.egraph["regions"] > 2
    torch.testing.assert_close(m(*inputs).logits, model(*inputs).logits, rtol=1e-4, atol=1e-4)
