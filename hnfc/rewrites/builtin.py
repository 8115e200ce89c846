"""hnfc's rule library: one rule per line, grouped by family (the family is the first tag).

Every rule is an equality over the reals on its guarded domain, applied left to right; the
extractor decides whether the right side is better. Operand order of `+` and `*` does not
matter in patterns (the compiler matches both orders).
"""

from __future__ import annotations

from hnfc.rewrites.builders import amax, exp, expm1, log, log1p, log_softmax, logsigmoid, logsumexp, reciprocal, sigmoid, softmax, softplus
from hnfc.rewrites.builders import sum as rsum
from hnfc.rewrites.dsl import attr_vars, check_unique, pos, rule, vars

x, y, z = vars("x y z")
d, D, k = attr_vars("d D k")

LOG_EXP = ("log-exp",)
SOFTMAX = ("softmax",)
ALGEBRA = ("algebra",)

RULES = check_unique(
    [
        # log / exp
        rule("log1p-intro", log(1 + x), log1p(x), tags=LOG_EXP),
        rule("expm1-intro", exp(x) - 1, expm1(x), tags=LOG_EXP),
        rule("log-exp", log(exp(x)), x, tags=LOG_EXP),
        rule("exp-log", exp(log(x)), x, when=[pos(x)], tags=LOG_EXP),
        rule("softplus-intro", log1p(exp(x)), softplus(x), tags=LOG_EXP),
        rule("logsigmoid-intro", log(sigmoid(x)), logsigmoid(x), tags=LOG_EXP),
        rule("logsigmoid-neg-softplus", -softplus(-x, beta=1.0), logsigmoid(x), tags=LOG_EXP),
        rule("sigmoid-intro", 1 / (1 + exp(-x)), sigmoid(x), tags=LOG_EXP),
        rule("sigmoid-intro-reciprocal", reciprocal(1 + exp(-x)), sigmoid(x), tags=LOG_EXP),
        rule("sigmoid-exp-ratio", exp(x) / (1 + exp(x)), sigmoid(x), tags=LOG_EXP),
        rule("log-mul", log(x * y), log(x) + log(y), when=[pos(x), pos(y)], tags=LOG_EXP),
        rule("log-div", log(x / y), log(x) - log(y), when=[pos(x), pos(y)], tags=LOG_EXP),
        rule("log-reciprocal", log(1 / x), -log(x), when=[pos(x)], tags=LOG_EXP),
        # softmax family
        rule("softmax-intro", exp(x) / rsum(exp(x), dim=(d,), keepdim=True), softmax(x, dim=d), tags=SOFTMAX),
        rule("log-softmax-intro", log(softmax(x, dim=d)), log_softmax(x, dim=d), tags=SOFTMAX),
        rule("logsumexp-intro", log(rsum(exp(x), dim=D, keepdim=k)), logsumexp(x, dim=D, keepdim=k), tags=SOFTMAX),
        rule("log-softmax-from-logsumexp", x - logsumexp(x, dim=(d,), keepdim=True), log_softmax(x, dim=d), tags=SOFTMAX),
        rule("softmax-max-shift", softmax(x - amax(x, dim=(d,), keepdim=True), dim=d), softmax(x, dim=d), tags=SOFTMAX),
        rule("log-softmax-max-shift", log_softmax(x - amax(x, dim=(d,), keepdim=True), dim=d), log_softmax(x, dim=d), tags=SOFTMAX),
        rule(
            "logsumexp-max-shift",
            amax(x, dim=D, keepdim=True) + logsumexp(x - amax(x, dim=D, keepdim=True), dim=D, keepdim=True),
            logsumexp(x, dim=D, keepdim=True),
            tags=SOFTMAX,
        ),
        # algebra that connects the families (one bounded pass between stability phases)
        rule("add-assoc-left", (x + y) + z, x + (y + z), tags=ALGEBRA),
        rule("add-assoc-right", x + (y + z), (x + y) + z, tags=ALGEBRA),
        rule("mul-assoc-left", (x * y) * z, x * (y * z), tags=ALGEBRA),
        rule("add-neg-is-sub", x + (-y), x - y, tags=ALGEBRA),
        rule("sub-neg-is-add", x - (-y), x + y, tags=ALGEBRA),
        rule("neg-neg", -(-x), x, tags=ALGEBRA),
        rule("mul-one", x * 1, x, tags=ALGEBRA),
        rule("div-one", x / 1, x, tags=ALGEBRA),
        rule("add-zero", x + 0, x, tags=ALGEBRA),
        rule("sub-zero", x - 0, x, tags=ALGEBRA),
        rule("mul-neg-one", x * -1, -x, tags=ALGEBRA),
    ]
)
