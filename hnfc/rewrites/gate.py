"""User rules pass the soundness checker before they are used.

In: a rule pack spec (anything `hnfc.rewrites.packs.resolve` takes). Out: its rules, each rule
that is not one of hnfc's own checked first (`checked`; hnfc's own are checked by the test suite,
not at run time): a refused rule raises `UnsoundRuleError` naming the rule and its
counterexample, unless the caller trusts the rules (`Config.trust_rules`), and then `trust_note`
gives the report's warning. Verdicts are cached by the rule's content, so a rule costs one check
per process. Where: the pipeline's rule selection, the backend's options, lint.
"""

from __future__ import annotations

import functools
from typing import Any, Iterable

from hnfc.rewrites.builtin import RULES
from hnfc.rewrites.check import check_rule
from hnfc.rewrites.dsl import Rule, RuleError
from hnfc.rewrites.packs import resolve


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
    return frozenset(RULES)


@functools.lru_cache(maxsize=1024)
def _verdict(rule: Rule):
    """The checker's verdict on one rule, cached by its content (a frozen, hashable dataclass)."""
    return check_rule(rule)


__all__ = ["UnsoundRuleError", "checked", "trust_note"]
