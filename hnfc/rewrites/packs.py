"""Rule packs: naming a set of rules for `hnfc.optimize(rules=...)`, the backend's
`options={"rules": ...}` and `hnfc rules check PACK`.

`resolve(spec)` turns any of these into a tuple of `Rule`s (names checked unique):

- a `Rule`, or an iterable of `Rule`s (and of further specs, flattened);
- a module: its `RULES` attribute (an iterable of rules, or a zero-argument function returning one);
- a string `"package.module:attr"` or `"path/to/file.py:attr"` (the attribute, or the
  zero-argument function it names; loaded by `hnfc._imports.import_attr`, as the command line's
  MODULE:FACTORY is) or `"package.module"` (its `RULES`);
- a string naming an installed pack: an entry point of the group `hnfc.rules`, declared by a
  distribution as

      [project.entry-points."hnfc.rules"]
      mypack = "mypkg.rules:RULES"      # an iterable of Rules, or a zero-arg function returning one

  and `"hnfc"` for hnfc's own library.
- None: no rules.

Rules from a pack keep their definitions; `source` records the pack they came from.

`checked(spec)` is `resolve` plus the soundness checker (hnfc/rewrites/check.py) on every rule
that is not one of hnfc's own (those are checked by the test suite, not at run time): a refused
rule raises `UnsoundRuleError` naming the rule and its counterexample, unless the caller trusts
the rules (`Config.trust_rules`), and then `trust_note` gives the report's warning. Verdicts are
cached by the rule's content, so a rule costs one check per process.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.metadata
import types
from typing import Any, Iterable

from hnfc._imports import import_attr
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


class UnsoundRuleError(RuleError):
    """A user rule the soundness checker refuses; the message names it and the counterexample."""


def checked(spec: Any, *, trust: bool = False) -> tuple[Rule, ...]:
    """`resolve(spec)`, each rule outside hnfc's library checked for soundness first (unless
    `trust`): the first refused rule raises UnsoundRuleError."""
    rules = resolve(spec)
    if trust:
        return rules
    for r in _user_rules(rules):
        try:
            verdict = _verdict(r)
        except TypeError:  # an unhashable attribute value in a pattern: check it uncached
            from hnfc.rewrites.check import check_rule

            verdict = check_rule(r)
        if not verdict.ok:
            where = f" (from {r.source})" if r.source != "hnfc" else ""
            raise UnsoundRuleError(
                f"rule {r.name!r}{where} is unsound: {r}; the soundness checker refuses it {verdict.detail}. "
                "Add a guard that excludes the counterexample, or pass trust_rules=True to use it unchecked"
            )
    return rules


def trust_note(rules: Iterable[Rule] | None) -> str | None:
    """The report's warning when user rules run unchecked (`trust_rules=True`), else None."""
    unchecked = _user_rules(resolve(rules)) if rules is not None else []
    if not unchecked:
        return None
    return f"trust_rules=True: {len(unchecked)} user rule(s) ran without the soundness check ({', '.join(r.name for r in unchecked)})"


def _user_rules(rules: Iterable[Rule]) -> list[Rule]:
    library = _library()
    return [r for r in rules if not _member(r, library)]


def _member(rule: Rule, library: frozenset[Rule]) -> bool:
    try:
        return rule in library
    except TypeError:  # unhashable: not one of the library's (frozen, hashable) rules
        return False


@functools.lru_cache(maxsize=1)
def _library() -> frozenset[Rule]:
    from hnfc.rewrites.builtin import RULES

    return frozenset(RULES)


@functools.lru_cache(maxsize=1024)
def _verdict(rule: Rule):
    """The checker's verdict on one rule, cached by its content (a frozen, hashable dataclass)."""
    from hnfc.rewrites.check import check_rule

    return check_rule(rule)


__all__ = ["GROUP", "UnsoundRuleError", "checked", "installed", "resolve", "trust_note"]
