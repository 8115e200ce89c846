"""A user's rule pack (the tutorial's example, docs/rules.md): rules hnfc's library lacks.

    m = hnfc.optimize(f, (x,), rules=hnfc.rewrites.packs.resolve("hnfc.examples.user_pack"))
    hnfc.check_rules("hnfc.examples.user_pack")      # every rule proven or tested

Installed as a distribution, it would be declared under the entry-point group `hnfc.rules`:

    [project.entry-points."hnfc.rules"]
    log1m = "hnfc.examples.user_pack:RULES"
"""

from hnfc.rewrites import log, log1p, rule, vars

x, = vars("x")

RULES = [
    # log(1 - x) loses every bit of x below 2^-24 in float32; log1p(-x) keeps them
    rule("log1m-intro", log(1 - x), log1p(-x), tags=("log-exp",), doc="log(1 - x) = log1p(-x)"),
]
