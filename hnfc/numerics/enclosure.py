"""Tier 1 of the reference: a program evaluated vectorized, each element with an error enclosure.

In: a `Program` and its leaf values (inputs and parameters as numpy arrays, already rounded to
their declared dtypes), a working float dtype (float64, or numpy's long double where it is wider).
Out: per program output a `Ball`: values `y` in the working dtype and absolute error bounds `e`
such that the exact real value the op table's mpmath `ref` gives lies in [y - e, y + e]. `e` is
+inf where no bound is known (NaN, overflow, a domain edge inside the enclosure, an undecidable
comparison). hnfc.reference decides with it every element whose whole enclosure rounds to one
float and sends only the rest to mpmath (Herbie's Rival: escalate only where needed).

The bound is a running error analysis, op by op, for values that carry error:
- rounding of the working dtype: + − × ÷ sqrt are correctly rounded (u = half an ulp, relative,
  plus the smallest subnormal for underflow); libm functions (exp, log, tanh, ...) get `LIBM_ULPS`
  ulps and formulas of a few calls `COMPOUND_ULPS` (glibc documents ≤ 1-4 ulps for these);
- propagated error: the op's Lipschitz bound over the enclosure (|f'| at its worst point: e.g.
  exp: |y|·expm1(e), log: e/(x - e), tanh: 1), the standard first-and-second-order products for
  ×, ÷, and for sums and matrix products Higham's γ_n = nu/(1 - nu) times Σ|terms| (any order of
  summation, BLAS included);
- composite ops (softmax, layer_norm, sdpa, gelu, ...) are written as the same real formula their
  `ref` computes, in these bounded primitives, so their enclosure is as sound as the primitives';
- the bound arithmetic itself is rounded: every computed bound is grown by `GROW`, and bounds that
  go through float64 BLAS (|A|·|B|) are rounded up into float64 and grown by their own γ_n.
Shape ops run their own `ref` on index arrays, so they mean exactly what the reference means.

Opaque ops run in torch, in float64 on the CPU, exactly as the mpmath reference runs them: when
every argument is exact (and a float64), the call sees the very values the mpmath path gives it,
so its result is the same and exact by the reference's convention (embedding, arange, masks).
A known selection (split, index, narrow, ...: `SELECTIONS`) of inexact values is run on index
codes instead and gathers values and bounds. Random ops and anything else inexact: `Unsupported`
(the caller then evaluates the whole program in mpmath, as before).

torch is imported only for opaque ops and the `erf` of gelu (float64, torch.special).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import mpmath
import numpy as np

from hnfc.foundation.dtypes import DTYPES, to_torch
from hnfc.ops.core import norm_dims
from hnfc.foundation.types import TensorType
from hnfc.ir.program import last_uses
from hnfc.numerics.balls import Ball, COMPOUND_ULPS, Ctx, LIBM_ULPS, Unsupported


def _binary(name: str):
    return {"add": Ctx.add, "sub": Ctx.sub, "mul": Ctx.mul, "div": Ctx.div}.get(name)


def _where(c: Ctx, xs: list[Ball]) -> Ball:
    cond, a, b = xs
    cb, undecided = _truth(c, cond)
    if a.y.dtype == bool and b.y.dtype == bool:  # a mask stays a mask (sdpa tells them by it)
        return Ball(np.where(cb, a.y, b.y), np.where(undecided, np.inf, np.where(cb, a.e, b.e)).astype(c.dt))
    a, b = c.num(a), c.num(b)
    y = np.where(cb, a.y, b.y)
    e = np.where(cb, a.e, b.e)
    e = np.where(undecided, np.inf, e)
    return c.fix(y, e)


def _truth(c: Ctx, b: Ball):
    """bool(v) of each value, and where the enclosure cannot tell (it holds 0 and another value)."""
    if b.y.dtype == bool:
        return b.y, b.e != 0
    y = b.y != 0
    und = (b.e != 0) & (np.abs(b.y) <= b.e) | np.isnan(b.y) | np.isnan(b.e)
    return y, und


def _to(c: Ctx, x: Ball, at, out) -> Ball:
    kind = DTYPES[at["dtype"]].kind
    if kind == "float":
        return x
    if kind == "bool":
        y, und = _truth(c, x)
        return Ball(y, np.where(und, np.inf, 0).astype(c.dt))
    # truncation toward zero: decided when both ends truncate alike
    with np.errstate(invalid="ignore", over="ignore"):
        xn = c.num(x)
        lo, hi = np.trunc(xn.y - xn.e), np.trunc(xn.y + xn.e)
        ok = (lo == hi) & np.isfinite(xn.y) & np.isfinite(xn.e)
        return Ball(np.where(ok, np.trunc(xn.y), 0).astype(c.dt), np.where(ok, 0, np.inf).astype(c.dt))


def _index_map(node, args: list[Ball], out) -> Ball:
    """A shape op: its own ref run on index arrays, then the values gathered by index."""
    sizes = [a.y.size for a in args]
    offs = np.cumsum([0] + sizes)
    idx = [np.arange(o, o + s, dtype=np.int64).reshape(a.y.shape).astype(object) for a, o, s in zip(args, offs, sizes)]
    where = np.asarray(node.opdef.ref(idx, node.attr, out)).astype(np.int64)
    if len(args) == 1:
        ys, es = args[0].y.reshape(-1), args[0].e.reshape(-1)
    else:
        dt = np.result_type(*(a.y.dtype for a in args))
        ys = np.concatenate([a.y.reshape(-1).astype(dt) for a in args])
        es = np.concatenate([a.e.reshape(-1) for a in args])
    return Ball(ys[where], es[where])


def _layer_norm(c: Ctx, xs, at, out, center: bool, eps: float) -> Ball:
    x = c.num(xs[0])
    axes = tuple(range(x.y.ndim - at["normalized_ndim"], x.y.ndim))
    n = c.const(float(math.prod(x.y.shape[a] for a in axes)))
    if center:
        x = c.sub(x, c.div(c.sum(x, axes, True), n))
    var = c.div(c.sum(c.mul(x, x), axes, True), n)
    y = c.div(x, c.sqrt(c.add(var, c.const(float(eps)))))
    return _affine(c, y, xs[1], xs[2] if center else None)


def _batch_norm(c: Ctx, xs, at, out) -> Ball:
    x, w, b, mean, var = xs
    shape = (1, -1) + (1,) * (x.y.ndim - 2)

    def per_channel(v):
        return None if v is None else Ball(v.y.reshape(shape), v.e.reshape(shape))

    mean, var, w, b = map(per_channel, (mean, var, w, b))
    y = c.div(c.sub(x, mean), c.sqrt(c.add(var, c.const(float(at["eps"])))))
    return _affine(c, y, w, b)


def _affine(c: Ctx, y: Ball, w: Ball | None, b: Ball | None) -> Ball:
    """y · w + b, each optional (a norm's weight and bias)."""
    if w is not None:
        y = c.mul(y, w)
    if b is not None:
        y = c.add(y, b)
    return y


def _sdpa(c: Ctx, xs, at, out) -> Ball:
    q, k, v, mask = xs
    if at["enable_gqa"] and q.y.shape[-3] != k.y.shape[-3]:
        rep = q.y.shape[-3] // k.y.shape[-3]
        k = Ball(np.repeat(k.y, rep, axis=-3), np.repeat(k.e, rep, axis=-3))
        v = Ball(np.repeat(v.y, rep, axis=-3), np.repeat(v.e, rep, axis=-3))
    scale = c.const(float(at["scale"])) if at["scale"] is not None else c.mp_const(lambda: 1 / mpmath.sqrt(q.y.shape[-1]))
    kt = Ball(np.swapaxes(k.y, -1, -2), np.swapaxes(k.e, -1, -2))
    logits = c.mul(c.matmul(q, kt), scale)
    L, S = logits.y.shape[-2], logits.y.shape[-1]
    ninf = c.exact(np.full((), -np.inf, c.dt))
    if at["is_causal"]:
        logits = _where(c, [c.exact(np.tril(np.ones((L, S), dtype=bool))), logits, ninf])
    if mask is not None:
        if mask.y.dtype == bool:
            logits = _where(c, [mask, logits, ninf])
        else:
            logits = c.add(logits, mask)
    _, ex, s = c.softmax_parts(logits, logits.y.ndim - 1)
    return c.matmul(c.div(ex, s), v)


def _linear_like(c: Ctx, name: str, xs, at) -> Ball:
    if name in ("mm", "bmm", "matmul"):
        return c.matmul(xs[0], xs[1])
    if name == "linear":
        x, w, b = xs
        y = c.matmul(x, Ball(w.y.T, w.e.T))
        return y if b is None else c.add(y, b)
    bias, a, b = xs  # addmm
    prod = c.mul(c.matmul(a, b), c.const(float(at["alpha"])))
    return prod if at["beta"] == 0 else c.add(prod, c.mul(bias, c.const(float(at["beta"]))))


def _reduce(c: Ctx, name: str, x: Ball, at) -> Ball:
    axes = norm_dims(at.get("dim"), x.y.ndim)
    keep = at["keepdim"]
    if name == "sum":
        return c.sum(x, axes, keep)
    n = math.prod(x.y.shape[a] for a in axes) if axes else 1
    if name == "mean":
        return c.div(c.sum(x, axes, keep), c.const(float(n)))
    if name == "amax":
        return c.amax(x, axes, keep, np.max)
    if name == "amin":
        return c.amax(x, axes, keep, np.min)
    if name == "logsumexp":  # log(sum(exp(x))) = m + log(sum(exp(x - m)))
        x = c.num(x)
        m = np.max(x.y, axis=axes, keepdims=True)
        m = np.where(np.isfinite(m), m, 0)
        s = c.sum(c.exp(c.sub(x, c.exact(m))), axes, keep)
        return c.add(c.log(s), c.exact(m if keep else m.reshape(s.y.shape)))
    if name == "prod":
        return _prod(c, x, axes, keep)
    if name == "vector_norm":
        x = c.num(x)
        a = Ball(np.abs(x.y), x.e)
        p = float(at["ord"])
        if math.isinf(p):
            return c.amax(a, axes, keep, np.max)
        if p == 1:
            return c.sum(a, axes, keep)
        if p == 2:
            return c.sqrt(c.sum(c.mul(a, a), axes, keep))
        if math.frexp(p)[0] != 0.5:  # the reference raises to 1/p rounded at its precision: exact only for powers of 2
            raise Unsupported(f"vector_norm of order {p}")
        return c.pow(c.sum(c.pow(a, p), axes, keep), 1 / p)
    if name in ("var", "std"):
        x = c.num(x)
        d = c.sub(x, c.div(c.sum(x, axes, True), c.const(float(n))))
        dof = n - at["correction"]
        if dof <= 0:
            raise Unsupported(f"{name} with {dof} degrees of freedom")
        var = c.div(c.sum(c.mul(d, d), axes, keep), c.const(float(dof)))
        return var if name == "var" else c.sqrt(var)
    raise Unsupported(name)


PROD_TERMS = 4096  # a longer product is left to mpmath (one vectorized step per term)


def _prod(c: Ctx, x: Ball, axes: tuple, keep: bool) -> Ball:
    """The product over `axes` as n - 1 bounded multiplications (any order: the real product)."""
    x = c.num(x)
    kept = [d for d in range(x.y.ndim) if d not in axes]
    n = math.prod(x.y.shape[a] for a in axes) if axes else 1
    if n > PROD_TERMS:
        raise Unsupported(f"prod over {n} terms")
    shape = tuple(1 if d in axes else x.y.shape[d] for d in range(x.y.ndim)) if keep else tuple(x.y.shape[d] for d in kept)
    ys = np.moveaxis(x.y, list(axes), list(range(len(kept), x.y.ndim))).reshape(shape + (n,)) if axes else x.y.reshape(shape + (1,))
    es = np.moveaxis(x.e, list(axes), list(range(len(kept), x.y.ndim))).reshape(shape + (n,)) if axes else x.e.reshape(shape + (1,))
    acc = c.exact(np.ones(shape, c.dt))
    for j in range(ys.shape[-1]):
        acc = c.mul(acc, Ball(ys[..., j], es[..., j]))
    return acc


def _nll_loss(c: Ctx, xs, at, out) -> Ball:
    x, target, weight = xs
    if target.e.any():
        raise Unsupported("nll_loss with inexact targets")
    x = c.num(x)
    x2y, x2e = (x.y.reshape(1, -1), x.e.reshape(1, -1)) if x.y.ndim == 1 else (x.y, x.e)
    t = np.asarray(target.y).reshape(-1).astype(np.int64)
    ignored = t == at["ignore_index"]
    ti = np.where(ignored, 0, t)
    rows = np.arange(t.size)
    picked = Ball(np.where(ignored, 0, x2y[rows, ti]).astype(c.dt), np.where(ignored, 0, x2e[rows, ti]).astype(c.dt))
    if weight is None:
        w = c.exact(np.where(ignored, 0, 1).astype(c.dt))
    else:
        weight = c.num(weight)
        w = Ball(np.where(ignored, 0, weight.y[ti]).astype(c.dt), np.where(ignored, 0, weight.e[ti]).astype(c.dt))
    terms = c.neg(c.mul(picked, w))
    if at["reduction"] == 0:
        return Ball(terms.y.reshape(out.shape), terms.e.reshape(out.shape))
    total = c.sum(terms, (0,), False)
    return total if at["reduction"] == 2 else c.div(total, c.sum(w, (0,), False))


def _bce(c: Ctx, xs, at, out) -> Ball:
    """-(t log p + (1 - t) log(1 - p)), each log clamped at -100 (max is 1-Lipschitz); a log of
    an exact 0 is the clamp, exactly."""
    p, t, w = (None if v is None else c.num(v) for v in xs)
    one, floor = c.exact(np.ones((), c.dt)), c.exact(np.asarray(-100, dtype=c.dt))

    def clamped_log(v: Ball) -> Ball:
        zero = (v.e == 0) & (v.y == 0)
        safe = Ball(np.where(zero, 1, v.y).astype(c.dt), v.e)
        lg = c.log(safe)
        m = np.maximum(lg.y, floor.y)
        return Ball(np.where(zero, floor.y, np.where(np.isnan(lg.y), lg.y, m)), np.where(zero, 0, lg.e).astype(c.dt))

    terms = c.neg(c.add(c.mul(t, clamped_log(p)), c.mul(c.sub(one, t), clamped_log(c.sub(one, p)))))
    return _reduced(c, terms if w is None else c.mul(terms, w), at["reduction"])


def _bce_logits(c: Ctx, xs, at, out) -> Ball:
    """w ((1 - t) softplus(x) + p t softplus(-x)), as the op's reference writes it."""
    x, t, w, p = (None if v is None else c.num(v) for v in xs)
    one = c.exact(np.ones((), c.dt))

    def softplus(v: Ball) -> Ball:
        return c.unary("softplus", v, {"beta": 1})

    positive = c.mul(t, softplus(c.neg(x)))
    terms = c.add(c.mul(c.sub(one, t), softplus(x)), positive if p is None else c.mul(p, positive))
    return _reduced(c, terms if w is None else c.mul(terms, w), at["reduction"])


def _reduced(c: Ctx, terms: Ball, reduction: int) -> Ball:
    """A loss's reduction: none (0), mean (1) or sum (2) over every element."""
    if reduction == 0:
        return terms
    total = c.sum(terms, tuple(range(terms.y.ndim)), False)
    return total if reduction == 2 else c.div(total, c.const(float(max(1, terms.y.size))))


def _leaf_value(c: Ctx, at) -> Ball:
    value = at["value"]
    if at["dtype"] == "bool":
        return c.exact(np.asarray(bool(value)))
    y = c.t(value)
    if (float(value) if not isinstance(value, int) else value) != (float(y) if not isinstance(value, int) else int(y)):
        raise Unsupported(f"constant {value!r} is not exact in {c.dt}")
    return c.exact(np.asarray(y))


def _node(c: Ctx, node, xs: list, prog) -> Ball:
    op, at, out = node.op, node.attr, node.type
    kind = node.opdef.kind
    if op == "const":
        return _leaf_value(c, at)
    if op == "full":
        v = _leaf_value(c, at)
        return c.exact(np.full(tuple(at["shape"]), v.y, dtype=v.y.dtype))
    if op in ("detach",):
        return xs[0]
    if op == "opaque":
        return _opaque(c, node, xs, prog)
    if op == "getitem":
        v = xs[0][at["index"]]
        if v is None:
            raise Unsupported("getitem of a non-tensor item")
        return v
    if op == "to":
        return _to(c, xs[0], at, out)
    if op == "embedding":  # rows of the weight picked by exact integer indices: values and bounds as they are
        w, idx = xs
        if idx.e.any():
            raise Unsupported("embedding with inexact indices")
        rows = np.asarray(idx.y).astype(np.int64)
        return Ball(w.y[rows], w.e[rows])
    if kind == "shape":
        return _index_map(node, xs, out)
    f = _binary(op)
    if f is not None:
        return f(c, xs[0], xs[1])
    if op in ("maximum", "minimum"):
        a, b = c.num(xs[0]), c.num(xs[1])
        fn = np.maximum if op == "maximum" else np.minimum  # NaN-propagating, as r_max/r_min
        return c.fix(fn(a.y, b.y), np.maximum(a.e, b.e), a, b)
    if op == "hypot":
        a, b = c.num(xs[0]), c.num(xs[1])
        with np.errstate(invalid="ignore", over="ignore"):
            y = np.hypot(a.y, b.y)
            return c.fix(y, a.e + b.e + c.rnd(y, LIBM_ULPS), a, b)
    if op == "logaddexp":
        a, b = c.num(xs[0]), c.num(xs[1])
        with np.errstate(invalid="ignore", over="ignore"):
            y = np.logaddexp(a.y, b.y)
            return c.fix(y, np.maximum(a.e, b.e) + c.rnd(y, COMPOUND_ULPS), a, b)
    if op == "where":
        return _where(c, xs)
    if op == "lt":  # exact where the ball lies on one side of the threshold; undecided (e != 0) else
        x, t = c.num(xs[0]), c.t(at["other"])
        und = ((x.e != 0) & (np.abs(x.y - t) <= x.e)) | np.isnan(x.y)
        return Ball(x.y < t, und.astype(c.dt))
    if op == "eq":  # exact where both balls are points, or where they do not overlap; undecided else
        a, b = c.num(xs[0]), c.num(xs[1])
        und = (((a.e != 0) | (b.e != 0)) & (np.abs(a.y - b.y) <= a.e + b.e)) | np.isnan(a.y) | np.isnan(b.y)
        return Ball(a.y == b.y, und.astype(c.dt))
    if kind == "pointwise":
        if node.opdef.enclosure is not None:  # the op entry's own vectorized meaning (hnfc/ops/slopes.py)
            return c.slope(xs[0], node.opdef.enclosure)
        return c.unary(op, xs[0], at)
    if kind == "reduction":
        return _reduce(c, op, xs[0], at)
    if kind == "linalg":
        return _linear_like(c, op, xs, at)
    if op in ("softmax", "log_softmax"):
        x = c.num(xs[0])
        axis = at["dim"] % max(x.y.ndim, 1)
        d, ex, s = c.softmax_parts(x, axis)
        return c.div(ex, s) if op == "softmax" else c.sub(d, c.log(s))
    if op == "layer_norm":
        return _layer_norm(c, xs, at, out, True, at["eps"])
    if op == "rms_norm":
        from hnfc.ops.reductions import _rms_eps

        return _layer_norm(c, [xs[0], xs[1], None], at, out, False, _rms_eps(at, out))
    if op == "batch_norm":
        return _batch_norm(c, xs, at, out)
    if op == "scaled_dot_product_attention":
        return _sdpa(c, xs, at, out)
    if op == "nll_loss":
        return _nll_loss(c, xs, at, out)
    if op == "binary_cross_entropy":
        return _bce(c, xs, at, out)
    if op == "binary_cross_entropy_with_logits":
        return _bce_logits(c, xs, at, out)
    raise Unsupported(op)


# aten ops that only select, copy or rearrange elements of their float arguments: run on index
# codes they give the element map
SELECTIONS = frozenset(
    f"aten.{n}"
    for n in (
        "split.Tensor", "split_with_sizes.default", "chunk.default", "unbind.int", "narrow.default",
        "index.Tensor", "index_select.default", "flip.default", "roll.default", "repeat.default",
        "clone.default", "alias.default", "select.int", "slice.Tensor", "t.default", "view.default",
        "contiguous.default", "embedding.default", "gather.default", "tril.default", "triu.default",
    )
)
_RANDOM = ("rand", "dropout", "bernoulli", "normal", "multinomial", "uniform", "randperm", "exponential")


def _is_float(v: Ball) -> bool:
    return v.y.dtype != bool and v.y.dtype.kind == "f"


def _opaque(c: Ctx, node, xs: list, prog) -> Any:
    import torch

    from hnfc.numerics.torch_calls import run_call

    target = node.attr["target"]
    if any(r in target for r in _RANDOM):
        raise Unsupported(f"random op {target}")
    arg_types = [None if a is None else prog.nodes[a].type for a in node.args]
    if any(isinstance(x, tuple) for x in xs):
        raise Unsupported("a tuple argument")
    # the mpmath path hands torch its values rounded to float64: so do we (an enclosure of the
    # rounded value is the rounded ends of the enclosure; rounding is monotone)
    xs = [x if x is None or not _is_float(x) else _rounded64(c, x) for x in xs]
    exact = all(x is None or not np.any(x.e) for x in xs)

    def run(args):
        call = node.opdef.emit(args, node.attr, node.type)
        with torch.no_grad():
            return run_call(call, "cpu", float_dtype=torch.float64, all_on_device=True)

    def tensor(v: Ball, t):
        if isinstance(t, TensorType) and DTYPES[t.dtype].kind == "bool":
            return torch.from_numpy(np.asarray(v.y != 0 if v.y.dtype != bool else v.y))
        if isinstance(t, TensorType) and DTYPES[t.dtype].kind == "int":
            return torch.from_numpy(np.asarray(v.y).astype(np.int64)).to(to_torch(t.dtype))
        return torch.from_numpy(np.asarray(v.y, dtype=np.float64))

    if exact:
        out = run([None if x is None else tensor(x, t) for x, t in zip(xs, arg_types)])
        return _from_torch(c, out)
    if target not in SELECTIONS:
        raise Unsupported(f"opaque {target} of inexact values")
    # a selection of inexact floats: run it on codes (exact integers in float64) for the float
    # arguments, the real values for the others (which must be exact)
    ys, es, args, off = [], [], [], 0
    for x, t in zip(xs, arg_types):
        if x is None:
            args.append(None)
        elif _is_float(x) and isinstance(t, TensorType) and DTYPES[t.dtype].kind == "float":
            ys.append(np.asarray(x.y, c.dt).reshape(-1))
            es.append(np.asarray(x.e, c.dt).reshape(-1))
            args.append(torch.arange(off, off + x.y.size, dtype=torch.float64).reshape(x.y.shape))
            off += x.y.size
        elif np.any(x.e):
            raise Unsupported(f"opaque {target}: inexact index argument")
        else:
            args.append(tensor(x, t))
    if off >= 2**53:
        raise Unsupported("too many elements to code in float64")
    yv, ev = np.concatenate(ys), np.concatenate(es)

    def gather(o):
        if isinstance(o, (tuple, list)):
            return tuple(gather(v) for v in o)
        codes = o.detach().numpy()
        if codes.dtype != np.float64 or not np.array_equal(codes, np.round(codes)):
            raise Unsupported(f"opaque {target}: not a selection")
        k = codes.astype(np.int64)
        return Ball(yv[k], ev[k])

    return gather(run(args))


def _rounded64(c: Ctx, x: Ball) -> Ball:
    """An enclosure of round_to_float64(v) for every v in x's enclosure."""
    with np.errstate(invalid="ignore", over="ignore"):
        lo = np.where(x.e == 0, x.y, np.nextafter(x.y - x.e, -np.inf)).astype(np.float64)
        hi = np.where(x.e == 0, x.y, np.nextafter(x.y + x.e, np.inf)).astype(np.float64)
        same = (lo == hi) | (np.isnan(lo) & np.isnan(hi))
        y = np.where(same, lo, (np.asarray(lo, c.dt) + np.asarray(hi, c.dt)) / 2)
        half = np.maximum(y - np.asarray(lo, c.dt), np.asarray(hi, c.dt) - y)
        e = np.where(same, 0, np.nextafter(half, np.inf))
        e = np.where(np.isnan(y) | np.isnan(e), np.inf, e)
    return Ball(np.asarray(y, c.dt), np.asarray(e, c.dt))



def _from_torch(c: Ctx, v: Any) -> Any:
    import torch

    if isinstance(v, (tuple, list)):
        return tuple(_from_torch(c, e) for e in v)
    if isinstance(v, torch.Tensor):
        if v.is_complex():
            raise Unsupported("complex result")
        if v.dtype == torch.bool:
            return c.exact(v.numpy().copy())
        arr = v.double().numpy() if v.is_floating_point() else v.numpy()
        y = arr.astype(c.dt)
        if arr.dtype.kind in "iu" and np.any(y.astype(arr.dtype) != arr):
            raise Unsupported("integer result not exact in the working dtype")
        return c.exact(y)
    if isinstance(v, (bool, int, float)):
        return c.exact(np.asarray(v, dtype=bool if isinstance(v, bool) else c.dt))
    return None


def supported(program) -> bool:
    """Whether every node may have a vectorized meaning here (opaque ops are judged as they run)."""
    return all(not (n.op == "opaque" and any(r in n.attr["target"] for r in _RANDOM)) for n in program.nodes)


def evaluate(program, leaves: dict[int, np.ndarray], dtype: Any) -> list[Ball]:
    """Every output of `program` as a Ball in `dtype`; `leaves` maps input and parameter node ids
    to their values (bool, integer or float numpy arrays, exact). Raises Unsupported."""
    if not supported(program):
        raise Unsupported("random op")
    c = Ctx(dtype)
    vals: list[Any] = [None] * len(program.nodes)
    last = last_uses(program)
    for i, node in enumerate(program.nodes):
        if i in leaves:
            v = leaves[i]
            if v.dtype == bool:
                vals[i] = c.exact(v)
            else:
                y = v.astype(c.dt)
                if v.dtype.kind in "iu" and np.any(y.astype(v.dtype) != v):
                    raise Unsupported("integer input not exact in the working dtype")
                vals[i] = c.exact(y)
        else:
            xs = [None if a is None else vals[a] for a in node.args]
            vals[i] = _node(c, node, xs, program)
            t = node.type
            if isinstance(vals[i], tuple) or vals[i] is None:
                pass
            elif isinstance(t, TensorType) and not t.is_symbolic and tuple(vals[i].y.shape) != tuple(t.shape):
                raise Unsupported(f"%{i} = {node.op}: shape {vals[i].y.shape}, type says {t}")
        for a in set(node.args):
            if a is not None and last[a] == i:
                vals[a] = None
    return [vals[o] for o in program.outputs]


def decide(ball: Ball, fmt: str, round_to_format: Callable) -> tuple[np.ndarray, np.ndarray]:
    """(values, decided): where the whole enclosure rounds to one value -- to float64 (nearest)
    and then to `fmt` -- that value (as float64), and a mask of those elements."""
    y, e = ball.y, ball.e
    if y.dtype == bool:
        return y.astype(np.float64), e == 0
    with np.errstate(invalid="ignore", over="ignore"):
        lo = np.nextafter(y - e, -np.inf)  # outward: the subtraction itself rounds
        hi = np.nextafter(y + e, np.inf)
        lo = np.where(e == 0, y, lo)
        hi = np.where(e == 0, y, hi)
        rlo = round_to_format(lo.astype(np.float64), fmt)
        rhi = round_to_format(hi.astype(np.float64), fmt)
        ok = (rlo == rhi) & ~np.isnan(y) & ~np.isnan(e)
    return np.where(ok, rlo, np.nan) + 0.0, ok  # + 0.0: the reference has no -0


AGREEMENT_WINDOW_ULPS = 2**16  # the rigorous bound may span at most this many output ulps
AGREEMENT_MARGIN = 2  # the wider value must sit this many observed differences from a boundary


def uses_float64_only(program) -> bool:
    """Whether some value is computed in float64 in every tier (erf), so that comparing the tiers
    would not show its error."""
    return any(n.op == "erf" or (n.op == "gelu" and n.attr.get("approximate") != "tanh") or getattr(n.opdef.enclosure, "torch64", "") for n in program.nodes)


def agree(narrow: Ball, wide: Ball, fmt: str, round_to_format: Callable, formats: dict) -> tuple[np.ndarray, np.ndarray]:
    """(values, decided) by two evaluations that must agree, as the mpmath path's own precision
    escalation decides (two precisions agreeing after rounding), here float64 against long double.

    The same formula at 53 and at 64 bits makes errors that scale with the unit roundoff, so the
    float64 value's distance from the long double one measures the float64 error, and the long
    double error is ~2^11 times smaller. An element is decided when the whole interval
    wide ± (AGREEMENT_MARGIN·|narrow - wide| + its last rounding) rounds to one value, and the
    rigorous bound of the wide evaluation spans at most AGREEMENT_WINDOW_ULPS ulps of the output
    format (which rules out what agreement cannot see: both precisions losing every bit to one
    cancellation and agreeing on the same wrong value)."""
    f = formats[fmt]
    yw = np.asarray(wide.y)
    if yw.dtype == bool:
        return yw.astype(np.float64), np.zeros(yw.shape, bool)
    with np.errstate(invalid="ignore", over="ignore"):
        yn = np.asarray(narrow.y, dtype=yw.dtype)
        fi = np.finfo(yw.dtype)
        diff = np.abs(yw - yn)
        e = AGREEMENT_MARGIN * diff + np.abs(yw) * fi.eps + fi.smallest_subnormal
        vals, ok = decide(Ball(yw, e), fmt, round_to_format)
        y64 = np.asarray(yw, dtype=np.float64)
        _, ex = np.frexp(y64)
        ex = np.where(y64 == 0, f.emin + 1, ex)  # (frexp(0) gives exponent 0: 0 has the smallest ulp)
        ulp = np.ldexp(1.0, np.maximum(ex - 1, f.emin) - (f.mantissa - 1))
        window = np.isfinite(wide.e) & (np.asarray(wide.e, dtype=np.float64) <= AGREEMENT_WINDOW_ULPS * ulp) & np.isfinite(diff)
    return vals, ok & window
