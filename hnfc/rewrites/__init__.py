"""Rewrite rules as data: the DSL, op builders, guards, and hnfc's own rule library.

    from hnfc.rewrites import rule, vars, log, log1p
    x, = vars("x")
    my_rule = rule("my-log1p", log(1 + x), log1p(x))

Builders exist for every op of the table (`hnfc.rewrites.log`, `.softmax`, ...), generated
from it. Nothing here imports egglog or torch; hnfc.rewrites.compile turns rules into egglog text.
"""

from hnfc.rewrites.dsl import (
    BUILDERS,
    FUSION,
    AttrVar,
    Const,
    ConstVar,
    Guard,
    Op,
    Pattern,
    Rule,
    RuleError,
    Var,
    attr_vars,
    const_vars,
    in_range,
    negative,
    nonneg,
    nonzero,
    pos,
    rank,
    rule,
    vars,
)

globals().update(BUILDERS)


def library() -> tuple[Rule, ...]:
    """hnfc's built-in rules."""
    from hnfc.rewrites.builtin import RULES

    return RULES


__all__ = [
    "FUSION",
    "AttrVar",
    "Const",
    "ConstVar",
    "Guard",
    "Op",
    "Pattern",
    "Rule",
    "RuleError",
    "Var",
    "attr_vars",
    "const_vars",
    "in_range",
    "library",
    "negative",
    "nonneg",
    "nonzero",
    "pos",
    "rank",
    "rule",
    "vars",
    *sorted(BUILDERS),
]
