"""Value types of the IR: a tensor's shape and dtype, or a tuple of them.

In: shapes (ints, or strings naming symbolic sizes) and short dtype names (hnfc.foundation.dtypes).
Out: hashable, printable type records used by the op table, the IR and the text form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

Dim = Union[int, str]


@dataclass(frozen=True)
class TensorType:
    shape: tuple[Dim, ...]
    dtype: str

    def __str__(self) -> str:
        return f"{self.dtype}[{','.join(str(d) for d in self.shape)}]"

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_symbolic(self) -> bool:
        return any(isinstance(d, str) for d in self.shape)

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            if isinstance(d, str):
                raise ValueError(f"numel of symbolic shape {self}")
            n *= d
        return n

    def with_dtype(self, dtype: str) -> "TensorType":
        return TensorType(self.shape, dtype)


@dataclass(frozen=True)
class TupleType:
    """Several results of one opaque op; read with `getitem`. None marks a non-tensor item."""

    items: tuple[TensorType | None, ...]

    def __str__(self) -> str:
        return "(" + ", ".join("_" if t is None else str(t) for t in self.items) + ")"


Type = Union[TensorType, TupleType]
