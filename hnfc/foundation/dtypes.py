"""Dtype facts shared by every layer: short names, mantissa bits, exponent range.

In: a short dtype name ("f32", "bf16", ...) or a torch dtype. Out: a `DType` record.
This sits below the op table; it imports torch only inside the two converter functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class DType:
    name: str  # short IR name, e.g. "bf16"
    torch_name: str  # attribute of the torch module, e.g. "bfloat16"
    bits: int  # storage width
    kind: str  # "float" | "int" | "bool" | "complex"
    mantissa: int = 0  # significand bits including the implicit one (floats only)
    max: float = 0.0  # largest finite value (floats only)
    tiny: float = 0.0  # smallest positive normal (floats only)

    @property
    def is_float(self) -> bool:
        return self.kind == "float"

    @property
    def eps(self) -> float:
        """Unit roundoff u = 2^-p (half an ulp of 1)."""
        return 2.0 ** -self.mantissa

    @property
    def emin(self) -> int:
        """Exponent of the smallest normal number (floats only)."""
        return math.frexp(self.tiny)[1] - 1

    @property
    def qmin(self) -> int:
        """Exponent of the smallest subnormal (the quantum of the subnormal range)."""
        return self.emin - self.mantissa + 1


_ALL = (
    DType("f16", "float16", 16, "float", 11, 65504.0, 2.0**-14),
    DType("bf16", "bfloat16", 16, "float", 8, 3.3895313892515355e38, 2.0**-126),
    DType("f32", "float32", 32, "float", 24, 3.4028234663852886e38, 2.0**-126),
    DType("f64", "float64", 64, "float", 53, 1.7976931348623157e308, 2.0**-1022),
    DType("i64", "int64", 64, "int"),
    DType("i32", "int32", 32, "int"),
    DType("i16", "int16", 16, "int"),
    DType("i8", "int8", 8, "int"),
    DType("u8", "uint8", 8, "int"),
    DType("bool", "bool", 8, "bool"),
    DType("c64", "complex64", 64, "complex"),
    DType("c128", "complex128", 128, "complex"),
)

DTYPES: dict[str, DType] = {d.name: d for d in _ALL}


def holds(value, name: str) -> bool:
    """The Python number `value` is exactly a value of float dtype `name` (±inf included, NaN
    not: its payload is not a value): rounding it into the dtype leaves it unchanged."""
    d = DTYPES[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not d.is_float or value != value:
        return False
    v = float(value)
    if v != value:
        return False  # an int too large for a double
    if math.isinf(v) or v == 0:
        return True
    if abs(v) > d.max:
        return False
    _, e = math.frexp(v)  # |v| = m·2^e, m in [0.5, 1): its quantum is 2^(e - p), at least 2^qmin
    return (v / 2.0 ** max(e - d.mantissa, d.qmin)).is_integer()
_BY_TORCH_NAME = {d.torch_name: d for d in _ALL}
FLOAT_ORDER = ("bf16", "f16", "f32", "f64")  # promotion order among float dtypes


def dtype(name: str) -> DType:
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; known: {', '.join(DTYPES)}") from None


def from_torch(torch_dtype) -> str:
    """torch.float32 -> "f32"."""
    name = str(torch_dtype).removeprefix("torch.")
    try:
        return _BY_TORCH_NAME[name].name
    except KeyError:
        raise ValueError(f"unsupported torch dtype {torch_dtype}") from None


def to_torch(name: str):
    import torch

    return getattr(torch, dtype(name).torch_name)


def promote(names: list[str]) -> str:
    """Result dtype of combining tensors of these dtypes (torch's category rules)."""
    floats = [n for n in names if DTYPES[n].kind == "float"]
    if floats:
        if "bf16" in floats and "f16" in floats:
            return "f32"
        return max(floats, key=FLOAT_ORDER.index)
    ints = [n for n in names if DTYPES[n].kind == "int"]
    if ints:
        return max(ints, key=lambda n: DTYPES[n].bits)
    return names[0] if names else "f32"


def dtype_name(d) -> str:
    """torch.bfloat16, "bfloat16" or "bf16" -> "bf16" (float dtypes only)."""
    if isinstance(d, str):
        name = d.removeprefix("torch.")
        if name in DTYPES:
            out = name
        else:
            out = next((x.name for x in DTYPES.values() if x.torch_name == name), None)
            if out is None:
                raise ValueError(f"unknown dtype {d!r}; use a torch float dtype or one of {', '.join(FLOAT_ORDER)}")
    else:
        out = from_torch(d)
    if not DTYPES[out].is_float:
        raise ValueError(f"dtype menu entries must be float dtypes, got {d!r}")
    return out
