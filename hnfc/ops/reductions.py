"""Op-table entries for reductions and normalizations (one entry per op).

softmax, log_softmax, layer_norm, rms_norm, batch_norm and attention stay whole ops: the
frontend never decomposes them, so rewrites can target them and lowering calls the fused kernel.
"""

from __future__ import annotations

import mpmath
import numpy as np

from hnfc.ops import reduction_bounds
from hnfc.ops.core import (
    Alias,
    Call,
    Example,
    OpDef,
    float_pointwise_type,
    float_reduce_type,
    mp_logsumexp,
    mp_max,
    mp_mean,
    mp_min,
    mp_softmax,
    mp_sum,
    mp_var,
    norm_dims,
    obj,
    r_div,
    r_log,
    r_sqrt,
    reduce_type,
    same_type,
)
from hnfc.foundation.dtypes import DTYPES
from hnfc.foundation.types import TensorType

_RED_EXAMPLES = (
    Example(shapes=((3, 5),), attrs={"dim": (-1,), "keepdim": False}),
    Example(shapes=((2, 3, 4),), attrs={"dim": (0, 2), "keepdim": True}),
    Example(shapes=((3, 4),), attrs={"dim": None, "keepdim": False}),
)


def _dims(d):
    """aten dim arguments (int, list, None or []) as a tuple, or None for 'all'."""
    if d is None or (not isinstance(d, int) and len(d) == 0):
        return None
    return (d,) if isinstance(d, int) else tuple(d)


def _axes(x: np.ndarray, dim) -> tuple[int, ...]:
    return norm_dims(dim, x.ndim)


def _sum_type(ts, at):
    """torch sums bool and integer tensors in int64 (a count of a bool/int32 mask is i64)."""
    t = reduce_type(ts, at)
    return TensorType(t.shape, "i64") if DTYPES[t.dtype].kind in ("int", "bool") else t


def _reduction(name, mp_fn, *, aliases, emit, to_float=False, domain=(-3.0, 3.0), doc="", infer=None, examples=_RED_EXAMPLES, **analysis):
    return OpDef(
        name=name,
        arity=1,
        attrs={"dim": None, "keepdim": False},
        infer=infer or (float_reduce_type if to_float else reduce_type),
        emit=emit,
        ref=lambda xs, at, out: mp_fn(xs[0], _axes(xs[0], at["dim"]), at["keepdim"]),
        aliases=aliases,
        domain=domain,
        examples=examples,
        kind="reduction",
        doc=doc,
        **analysis,
    )


def _logsumexp_type(ts, at):
    if at["dim"] is None:
        raise ValueError("logsumexp needs explicit dims (torch rejects an empty dim list)")
    return float_reduce_type(ts, at)


def _sum_like_emit(name, dim_overload):
    def emit(a, at, out):
        if at["dim"] is None and not at["keepdim"]:
            return Call(f"aten.{name}.default", (a[0],))
        return Call(f"aten.{name}.{dim_overload}", (a[0], list(at["dim"] or []), at["keepdim"]))

    return emit


def _sum_like_aliases(name, dim_overload):
    return (
        Alias(
            f"aten.{name}.{dim_overload}",
            lambda a: ([a["self"]], {"dim": _dims(a["dim"]), "keepdim": a["keepdim"]}) if a.get("dtype") is None else None,
        ),
        Alias(f"aten.{name}.default", lambda a: ([a["self"]], {"dim": None, "keepdim": False}) if a.get("dtype") is None else None),
    )


def _softmax_like(name, mp_fn, aten, *, domain=(-10.0, 10.0), **analysis):
    return OpDef(
        name=name,
        arity=1,
        attrs={"dim": -1},
        infer=float_pointwise_type,
        emit=lambda a, at, out: Call(f"aten.{aten}.default", (a[0], at["dim"], False)),
        ref=lambda xs, at, out: mp_fn(xs[0], at["dim"] % max(xs[0].ndim, 1)),
        aliases=(
            Alias(f"aten.{aten}.default", lambda a: ([a["self"]], {"dim": a["dim"]}) if not a["half_to_float"] else None),
            Alias(f"aten.{name}.int", lambda a: ([a["self"]], {"dim": a["dim"]}) if a.get("dtype") is None else None),
        ),
        domain=domain,
        examples=(Example(shapes=((3, 5),), attrs={"dim": -1}), Example(shapes=((2, 3, 4),), attrs={"dim": 1})),
        kind="nn",
        doc=f"{name} along `dim`",
        **analysis,
    )


def _log_softmax_ref(x, axis):
    return obj(np.frompyfunc(r_log, 1, 1)(mp_softmax(x, axis)))


def _normalize(x, axes, eps, *, center: bool):
    """(x - mean) / sqrt(var + eps), or x / sqrt(mean(x^2) + eps) when not centering."""
    if center:
        x = x - mp_mean(x, axes, True)
        var = mp_mean(x * x, axes, True)
    else:
        var = mp_mean(x * x, axes, True)
    denom = obj(np.frompyfunc(lambda v: r_sqrt(v + mpmath.mpf(eps)), 1, 1)(var))
    return obj(np.frompyfunc(r_div, 2, 1)(x, denom))


def _affine(y, w, b):
    if w is not None:
        y = y * w
    if b is not None:
        y = y + b
    return obj(y)


def _layer_norm_ref(xs, at, out):
    x, w, b = xs
    axes = tuple(range(x.ndim - at["normalized_ndim"], x.ndim))
    return _affine(_normalize(x, axes, at["eps"], center=True), w, b)


def _rms_eps(at, out: TensorType) -> float:
    # torch's default eps is the machine epsilon of the op's compute type (float for half types)
    if at["eps"] is not None:
        return at["eps"]
    return 2.0**-52 if out.dtype == "f64" else 2.0**-23


def _rms_norm_ref(xs, at, out):
    x, w = xs
    axes = tuple(range(x.ndim - at["normalized_ndim"], x.ndim))
    return _affine(_normalize(x, axes, _rms_eps(at, out), center=False), w, None)


def _norm_type(ts, at):
    """The input's type; the weight and bias must have exactly the normalized (trailing) shape,
    as torch's kernels require (so a rule folding `* w + b` into the op types only when they do)."""
    x = ts[0]
    want = tuple(x.shape[len(x.shape) - at["normalized_ndim"] :])
    for t in ts[1:]:
        if t is not None and tuple(t.shape) != want:
            raise ValueError(f"weight/bias {t} must have the normalized shape {list(want)}")
    return x


def _trailing(out: TensorType, at) -> list:
    """torch's `normalized_shape`: the trailing `normalized_ndim` sizes (the IR keeps only the
    count, so a rule can introduce the op without knowing shapes)."""
    return list(out.shape[len(out.shape) - at["normalized_ndim"] :])


def _batch_norm_ref(xs, at, out):
    x, w, b, mean, var = xs
    shape = (1, -1) + (1,) * (x.ndim - 2)

    def per_channel(v):
        return None if v is None else obj(v.reshape(shape))

    mean, var, w, b = map(per_channel, (mean, var, w, b))
    denom = obj(np.frompyfunc(lambda v: r_sqrt(v + mpmath.mpf(at["eps"])), 1, 1)(var))
    y = obj(np.frompyfunc(r_div, 2, 1)(x - mean, denom))
    return _affine(y, w, b)


def _sdpa_ref(xs, at, out):
    q, k, v, mask = xs
    if at["enable_gqa"] and q.shape[-3] != k.shape[-3]:
        rep = q.shape[-3] // k.shape[-3]
        k, v = np.repeat(k, rep, axis=-3), np.repeat(v, rep, axis=-3)
    scale = at["scale"] if at["scale"] is not None else 1 / mpmath.sqrt(q.shape[-1])
    logits = obj(np.matmul(q, np.swapaxes(k, -1, -2))) * mpmath.mpf(scale)
    L, S = logits.shape[-2], logits.shape[-1]
    if at["is_causal"]:
        keep = np.tril(np.ones((L, S), dtype=bool))
        logits = obj(np.where(keep, logits, -mpmath.inf))
    if mask is not None:
        if mask.dtype == object and all(isinstance(m, bool) for m in mask.flat):
            logits = obj(np.where(mask.astype(bool), logits, -mpmath.inf))
        else:
            logits = obj(logits + mask)
    return obj(np.matmul(mp_softmax(logits, logits.ndim - 1), v))


def _sdpa_type(ts, at):
    q, k, v = ts[:3]
    return TensorType(q.shape[:-1] + v.shape[-1:], q.dtype)


def _sdpa_attrs(a, mask_key=None, gqa=False):
    """mask_key / gqa: the overload's name for the mask, and whether it has `enable_gqa`."""
    if a.get("dropout_p", 0.0) != 0.0:
        return None  # random: stays opaque
    return [a["query"], a["key"], a["value"], a[mask_key] if mask_key else None], {
        "is_causal": a.get("is_causal", False),
        "scale": a.get("scale"),
        "enable_gqa": a["enable_gqa"] if gqa else False,
    }


def _variance_like(name: str, finish, doc: str, analysis: dict) -> OpDef:
    """var and std: aten's `.correction` overloads, the exact two-pass variance, then `finish`."""

    def ref(xs, at, out):
        v = mp_var(xs[0], _axes(xs[0], at["dim"]), at["keepdim"], at["correction"])
        return obj(np.frompyfunc(finish, 1, 1)(v))

    return OpDef(
        name=name,
        arity=1,
        attrs={"dim": None, "correction": 1, "keepdim": False},
        infer=float_reduce_type,
        emit=lambda a, at, out: Call(
            f"aten.{name}.correction", (a[0], None if at["dim"] is None else list(at["dim"])), {"correction": at["correction"], "keepdim": at["keepdim"]}
        ),
        ref=ref,
        aliases=(
            Alias(
                f"aten.{name}.correction",
                lambda a: (
                    [a["self"]],
                    {"dim": _dims(a["dim"]), "correction": 1 if a["correction"] is None else a["correction"], "keepdim": a["keepdim"]},
                ),
            ),
        ),
        examples=_RED_EXAMPLES + (Example(shapes=((3, 6),), attrs={"dim": (1,), "correction": 0, "keepdim": True}),),
        kind="reduction",
        doc=doc,
        **analysis,
    )


def _mp_prod(x: np.ndarray, axes, keepdim: bool) -> np.ndarray:
    return obj(np.prod(x, axis=axes, keepdims=keepdim, initial=mpmath.mpf(1)))


def _prod_type(ts, at):
    # aten.prod reduces one dim (prod.dim_int) or all of them (prod.default, no keepdim)
    dim = at["dim"]
    if dim is None:
        if at["keepdim"]:
            raise ValueError("prod over every dim has no keepdim form in aten")
    elif len(dim) != 1:
        raise ValueError(f"prod reduces one dim at a time, got dim={dim}")
    return reduce_type(ts, at)


def _prod_emit(a, at, out):
    if at["dim"] is None:
        return Call("aten.prod.default", (a[0],))
    return Call("aten.prod.dim_int", (a[0], at["dim"][0], at["keepdim"]))


OPS = [
    _reduction("sum", mp_sum, aliases=_sum_like_aliases("sum", "dim_IntList"), emit=_sum_like_emit("sum", "dim_IntList"), doc="sum over `dim`", infer=_sum_type, **reduction_bounds.SUM),
    _reduction(
        "prod",
        _mp_prod,
        aliases=(
            Alias("aten.prod.dim_int", lambda a: ([a["self"]], {"dim": (a["dim"],), "keepdim": a["keepdim"]}) if a.get("dtype") is None else None),
            Alias("aten.prod.default", lambda a: ([a["self"]], {"dim": None, "keepdim": False}) if a.get("dtype") is None else None),
        ),
        emit=_prod_emit,
        infer=_prod_type,
        domain=(0.5, 2.0),
        examples=(Example(shapes=((3, 5),), attrs={"dim": (-1,), "keepdim": False}), Example(shapes=((2, 3, 4),), attrs={"dim": (1,), "keepdim": True}), Example(shapes=((3, 4),), attrs={"dim": None, "keepdim": False})),
        doc="product over one dim (or all)",
        **reduction_bounds.PROD,
    ),
    _reduction(
        "mean",
        mp_mean,
        aliases=_sum_like_aliases("mean", "dim"),
        emit=_sum_like_emit("mean", "dim"),
        to_float=True,
        doc="mean over `dim`",
        **reduction_bounds.MEAN,
    ),
    _reduction(
        "amax",
        mp_max,
        aliases=(Alias("aten.amax.default", lambda a: ([a["self"]], {"dim": _dims(a["dim"]), "keepdim": a["keepdim"]})),),
        emit=lambda a, at, out: Call("aten.amax.default", (a[0], list(at["dim"] or []), at["keepdim"])),
        doc="max over `dim`",
        **reduction_bounds.AMAX,
    ),
    _reduction(
        "amin",
        mp_min,
        aliases=(Alias("aten.amin.default", lambda a: ([a["self"]], {"dim": _dims(a["dim"]), "keepdim": a["keepdim"]})),),
        emit=lambda a, at, out: Call("aten.amin.default", (a[0], list(at["dim"] or []), at["keepdim"])),
        doc="min over `dim`",
        **reduction_bounds.AMIN,
    ),
    _reduction(
        "logsumexp",
        mp_logsumexp,
        aliases=(Alias("aten.logsumexp.default", lambda a: ([a["self"]], {"dim": _dims(a["dim"]), "keepdim": a["keepdim"]})),),
        emit=lambda a, at, out: Call("aten.logsumexp.default", (a[0], list(at["dim"]), at["keepdim"])),
        infer=_logsumexp_type,
        examples=_RED_EXAMPLES[:2],
        domain=(-10.0, 10.0),
        doc="log(sum(exp x)) over `dim`",
        **reduction_bounds.LOGSUMEXP,
    ),
    _variance_like("var", lambda v: v, "variance over `dim` with Bessel `correction`", reduction_bounds.VAR),
    _variance_like("std", r_sqrt, "standard deviation (sqrt of var) over `dim` with Bessel `correction`", reduction_bounds.STD),
    _softmax_like("softmax", mp_softmax, "_softmax", **reduction_bounds.SOFTMAX),
    # torch's kernel takes log(sum exp) with the sum near 1 when one logit dominates: ~15 bits
    # off in float64 at logit gaps of ~10 (the exact op is well conditioned there). Test inside.
    _softmax_like("log_softmax", _log_softmax_ref, "_log_softmax", domain=(-2.0, 2.0), **reduction_bounds.LOG_SOFTMAX),
    OpDef(
        name="layer_norm",
        arity=3,
        attrs={"normalized_ndim": 1, "eps": 1e-5},
        optional=frozenset({1, 2}),
        infer=_norm_type,
        emit=lambda a, at, out: Call("aten.layer_norm.default", (a[0], _trailing(out, at), a[1], a[2], at["eps"])),
        ref=_layer_norm_ref,
        aliases=(
            Alias(
                "aten.native_layer_norm.default",
                lambda a: ([a["input"], a["weight"], a["bias"]], {"normalized_ndim": len(a["normalized_shape"]), "eps": a["eps"]}),
                output=0,
            ),
            Alias(
                "aten.layer_norm.default",
                lambda a: ([a["input"], a["weight"], a["bias"]], {"normalized_ndim": len(a["normalized_shape"]), "eps": a["eps"]}),
            ),
        ),
        examples=(
            Example(shapes=((3, 8), (8,), (8,)), attrs={"normalized_ndim": 1, "eps": 1e-5}),
            Example(shapes=((2, 3, 4), None, None), attrs={"normalized_ndim": 2, "eps": 1e-6}),
        ),
        kind="nn",
        doc="(x - mean) / sqrt(var + eps) * w + b over the trailing `normalized_ndim` dims (biased var)",
        **reduction_bounds.LAYER_NORM,
    ),
    OpDef(
        name="rms_norm",
        arity=2,
        attrs={"normalized_ndim": 1, "eps": None},
        optional=frozenset({1}),
        infer=_norm_type,
        emit=lambda a, at, out: Call("aten.rms_norm.default", (a[0], _trailing(out, at), a[1], at["eps"])),
        ref=_rms_norm_ref,
        aliases=tuple(
            Alias(
                target,
                lambda a: ([a["input"], a["weight"]], {"normalized_ndim": len(a["normalized_shape"]), "eps": a["eps"]}),
                output=out,
            )
            for target, out in (("aten.rms_norm.default", None), ("aten._fused_rms_norm.default", 0))
        ),
        examples=(
            Example(shapes=((3, 8), (8,)), attrs={"normalized_ndim": 1, "eps": 1e-6}),
            Example(shapes=((2, 4), None), attrs={"normalized_ndim": 1, "eps": None}),
        ),
        kind="nn",
        doc="x / sqrt(mean(x^2) + eps) * w over the trailing `normalized_ndim` dims; eps=None is the compute dtype's machine epsilon",
        **reduction_bounds.RMS_NORM,
    ),
    OpDef(
        name="batch_norm",
        arity=5,
        attrs={"eps": 1e-5},
        optional=frozenset({1, 2}),
        infer=same_type,
        emit=lambda a, at, out: Call("aten._native_batch_norm_legit_no_training.default", (a[0], a[1], a[2], a[3], a[4], 0.0, at["eps"]), index=0),
        ref=_batch_norm_ref,
        aliases=(
            Alias(
                "aten._native_batch_norm_legit_no_training.default",
                lambda a: ([a["input"], a["weight"], a["bias"], a["running_mean"], a["running_var"]], {"eps": a["eps"]}),
                output=0,
            ),
            Alias(
                "aten.native_batch_norm.default",
                lambda a: None
                if a["training"]
                else ([a["input"], a["weight"], a["bias"], a["running_mean"], a["running_var"]], {"eps": a["eps"]}),
                output=0,
            ),
        ),
        examples=(
            Example(
                shapes=((2, 3, 4, 4), (3,), (3,), (3,), (3,)),
                attrs={"eps": 1e-5},
                domain=((-3.0, 3.0), (0.5, 2.0), (-1.0, 1.0), (-1.0, 1.0), (0.5, 2.0)),
            ),
        ),
        kind="nn",
        doc="inference batch norm over channel dim 1 with running statistics",
        **reduction_bounds.BATCH_NORM,
    ),
    OpDef(
        name="scaled_dot_product_attention",
        arity=4,
        attrs={"is_causal": False, "scale": None, "enable_gqa": False},
        optional=frozenset({3}),
        infer=_sdpa_type,
        emit=lambda a, at, out: Call(
            "aten.scaled_dot_product_attention.default",
            (a[0], a[1], a[2], a[3], 0.0, at["is_causal"]),
            {"scale": at["scale"], "enable_gqa": at["enable_gqa"]},
        ),
        ref=_sdpa_ref,
        aliases=(
            Alias("aten.scaled_dot_product_attention.default", lambda a: _sdpa_attrs(a, "attn_mask", gqa=True)),
            Alias("aten._scaled_dot_product_flash_attention_for_cpu.default", lambda a: _sdpa_attrs(a, "attn_mask"), output=0),
            Alias("aten._scaled_dot_product_flash_attention.default", lambda a: _sdpa_attrs(a), output=0),
            Alias("aten._scaled_dot_product_efficient_attention.default", lambda a: _sdpa_attrs(a, "attn_bias"), output=0),
        ),
        examples=(
            Example(shapes=((2, 2, 4, 8), (2, 2, 5, 8), (2, 2, 5, 8), None)),
            Example(shapes=((1, 2, 4, 8), (1, 2, 4, 8), (1, 2, 4, 8), None), attrs={"is_causal": True}),
            Example(shapes=((1, 2, 4, 8), (1, 2, 4, 8), (1, 2, 4, 8), (4, 4)), attrs={"scale": 0.5}),
        ),
        kind="nn",
        doc="softmax(q k^T * scale + mask) v; scale defaults to 1/sqrt(head dim); no dropout",
        contraction=0,
        **reduction_bounds.SDPA,
    ),
]
