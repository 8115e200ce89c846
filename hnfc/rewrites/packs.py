"""Rule packs: naming a set of rules for `hnfc.optimize(rules=...)`, the backend's
`options={"rules": ...}` and `hnfc rules check PACK`.

`resolve(spec)` turns any of these into a tuple of `Rule`s (names checked unique):

- a `Rule`, or an iterable of `Rule`s (and of further specs, flattened);
- a module: its `RULES` attribute (an iterable of rules, or a zero-argument function returning one);
- a string `"package.module:attr"` or `"path/to/file.py:attr"` (the attribute, or the
  zero-argument function it names; loaded by `hnfc.foundation.imports.import_attr`, as the command line's
  MODULE:FACTORY is) or `"package.module"` (its `RULES`);
- a string naming an installed pack: an entry point of the group `hnfc.rules`, declared by a
  distribution as

      [project.entry-points."hnfc.rules"]
      mypack = "mypkg.rules:RULES"      # an iterable of Rules, or a zero-arg function returning one

  and `"hnfc"` for hnfc's own library.
- None: no rules.

Rules from a pack keep their definitions; `source` records the pack they came from.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import types
from typing import Any, Iterable

from hnfc.foundation.imports import import_attr
from hnfc.rewrites.dsl import Rule, RuleError, check_unique

GROUP = "hnfc.rules"


def installed() -> dict[str, importlib.metadata.EntryPoint]:
    """Installed rule packs: entry-point name -> entry point (group `hnfc.rules`)."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=GROUP)}


def resolve(spec: Any) -> tuple[Rule, ...]:
    """Any pack spec (see the module doc) as a tuple of rules with unique names."""
    return check_unique(_resolve(spec, where=repr(spec) if isinstance(spec, str) else None))


def _materialize(value: Any) -> Any:
    """An entry point or attribute may name a zero-argument function returning the rules."""
    if callable(value) and not isinstance(value, (Rule, type)):
        value = value()
    return value


def _with_source(rules: Iterable[Rule], source: str | None) -> list[Rule]:
    if source is None:
        return list(rules)
    return [r if r.source != "hnfc" else dataclasses.replace(r, source=source) for r in rules]


def _resolve(spec: Any, where: str | None) -> list[Rule]:
    if spec is None:
        return []
    if isinstance(spec, Rule):
        return [spec]
    if isinstance(spec, types.ModuleType):
        if not hasattr(spec, "RULES"):
            raise RuleError(f"rule pack module {spec.__name__} has no RULES attribute")
        return _resolve(_materialize(spec.RULES), spec.__name__)
    if isinstance(spec, str):
        return _resolve_name(spec)
    if isinstance(spec, Iterable):
        out: list[Rule] = []
        for item in spec:
            if not isinstance(item, (Rule, str, types.ModuleType)) and not isinstance(item, Iterable):
                raise RuleError(f"rule pack{' ' + where if where else ''}: {item!r} is not a Rule")
            out += _resolve(item, where)
        return out
    if callable(spec):
        return _resolve(spec(), where)
    raise RuleError(f"cannot read {spec!r} as a rule pack (give Rules, a module, 'module:attr' or an installed pack name)")


def _resolve_name(name: str) -> list[Rule]:
    if name == "hnfc":
        from hnfc.rewrites import library

        return list(library())
    if ":" in name:
        value, _ = import_attr(name, lambda msg: RuleError(f"rule pack {name!r}: {msg}"))
        return _with_source(_resolve(_materialize(value), name), name)
    packs = installed()
    if name in packs:
        try:
            value = packs[name].load()
        except Exception as e:
            raise RuleError(f"installed rule pack {name!r} ({packs[name].value}) failed to load: {type(e).__name__}: {e}") from None
        return _with_source(_resolve(_materialize(value), name), name)
    try:
        mod = importlib.import_module(name)
    except ImportError:
        known = sorted(["hnfc", *packs])
        raise RuleError(f"no rule pack {name!r}: not an installed pack ({', '.join(known)}), nor an importable module") from None
    return _with_source(_resolve(mod, name), name)


__all__ = ["GROUP", "installed", "resolve"]
