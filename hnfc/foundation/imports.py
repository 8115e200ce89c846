"""`import_attr("package.module:attr.path")`: import a module and walk a dotted attribute path.

One loader for every place a user names an object by string: the command line's MODULE:FACTORY
(failures are user errors with an exit code) and rule packs' "module:RULES" (failures are
`RuleError`s). The caller passes the exception type, so both accept the same names (a module
path or a `path/to/file.py`) and word the same failures alike.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

ErrorType = Callable[[str], Exception]  # an exception class, or a function making one from a message


def import_module(name: str, error: ErrorType = ImportError) -> ModuleType:
    """A module by dotted name, or a file (a name ending in .py or holding a '/') run as one.
    Any failure raises `error(message)`: "cannot import module 'NAME': why"."""
    if name.endswith(".py") or "/" in name:
        path = Path(name)
        if not path.is_file():
            raise error(f"cannot import module {name!r}: no such file")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as e:  # the file itself is broken: keep its traceback as the cause
            raise error(f"cannot import module {name!r}: {type(e).__name__}: {e}") from e
        return module
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and (name == e.name or name.startswith(e.name + ".")):  # the module itself is missing
            raise error(f"cannot import module {name!r}: no module named {e.name!r}") from None
        raise error(f"cannot import module {name!r}: {e}") from e  # one of its own imports is
    except Exception as e:
        raise error(f"cannot import module {name!r}: {type(e).__name__}: {e}") from e


def import_attr(spec: str, error: ErrorType = ImportError) -> tuple[Any, ModuleType]:
    """'package.module:attr.path' or 'path/to/file.py:attr' -> (the object, its module).
    Failures raise `error(message)`."""
    mod_name, colon, attr = spec.rpartition(":")  # rpartition: the attribute path has no ':'
    if not colon or not mod_name or not attr:
        raise error(f"bad name {spec!r}: expected MODULE:ATTRIBUTE")
    module = import_module(mod_name, error)
    value: Any = module
    for part in attr.split("."):
        if not hasattr(value, part):
            raise error(f"module {mod_name!r} has no attribute {attr!r}")
        value = getattr(value, part)
    return value, module


__all__ = ["import_attr", "import_module"]
