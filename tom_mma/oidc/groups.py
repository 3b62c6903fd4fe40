"""From a provider's group claim to TOM groups: ``TOM_MMA['OIDC_GROUP_MAP']`` (pure functions).

The map goes from a TOM group name to the claim values that put a user in it::

    "OIDC_GROUP_MAP": {
        "Observers": ["tom-observers"],            # exactly this value
        "LVK": ["glob:/collab/lvk/*"],             # an fnmatch pattern (case-sensitive)
        "Kilonova team": [r"re:kn-(core|ext)"],    # a regular expression matching the whole value
    }

The groups named in the map are *managed*: at each login a user is put in those their claim maps to and
taken out of the others. Groups not named in the map are never touched.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["GroupMapError", "GroupRule", "claim_values", "compile_group_map", "mapped_groups"]

GLOB = "glob:"
REGEX = "re:"


class GroupMapError(ValueError):
    """``OIDC_GROUP_MAP`` is malformed (check ``tom_mma.E066`` says so before any login)."""


@dataclass(frozen=True)
class GroupRule:
    """One pattern of the map: the TOM group it grants and how it matches a claim value."""

    group: str
    pattern: str
    kind: str  # "exact", "glob" or "regex"
    regex: re.Pattern | None = None

    def matches(self, value: str) -> bool:
        """Whether a claim value is matched by this rule."""
        if self.kind == "exact":
            return value == self.pattern
        if self.kind == "glob":
            return fnmatch.fnmatchcase(value, self.pattern)
        return self.regex.fullmatch(value) is not None


def compile_group_map(group_map: Any) -> list[GroupRule]:
    """Check and compile ``OIDC_GROUP_MAP``.

    Parameters
    ----------
    group_map : Any
        A dict from TOM group name (non-empty string) to a list of patterns (non-empty strings).

    Returns
    -------
    list of GroupRule

    Raises
    ------
    GroupMapError
        With a sentence that says what is wrong.

    Examples
    --------
    >>> [r.kind for r in compile_group_map({"A": ["a", "glob:a-*", "re:a[0-9]+"]})]
    ['exact', 'glob', 'regex']
    >>> compile_group_map({"A": ["re:("]})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tom_mma.oidc.groups.GroupMapError: OIDC_GROUP_MAP['A']: 're:(' is not a regular expression (...)
    """
    if not isinstance(group_map, Mapping):
        raise GroupMapError(f"OIDC_GROUP_MAP must be a dict from TOM group name to patterns, not {group_map!r}")
    rules = []
    for group, patterns in group_map.items():
        if not isinstance(group, str) or not group.strip() or len(group) > 150:
            raise GroupMapError(f"OIDC_GROUP_MAP: {group!r} is not a TOM group name (a string of 1-150 characters)")
        if isinstance(patterns, str) or not isinstance(patterns, Iterable):
            raise GroupMapError(f"OIDC_GROUP_MAP[{group!r}] must be a list of patterns, not {patterns!r}")
        for pattern in patterns:
            rules.append(_rule(group, pattern))
    return rules


def _rule(group: str, pattern: Any) -> GroupRule:
    if not isinstance(pattern, str) or not pattern:
        raise GroupMapError(f"OIDC_GROUP_MAP[{group!r}]: {pattern!r} is not a pattern (a non-empty string)")
    if pattern.startswith(REGEX):
        try:
            return GroupRule(group, pattern, "regex", re.compile(pattern[len(REGEX) :]))
        except re.error as exc:
            raise GroupMapError(f"OIDC_GROUP_MAP[{group!r}]: {pattern!r} is not a regular expression ({exc})") from None
    if pattern.startswith(GLOB):
        if not pattern[len(GLOB) :]:
            raise GroupMapError(f"OIDC_GROUP_MAP[{group!r}]: {pattern!r} is an empty pattern")
        return GroupRule(group, pattern[len(GLOB) :], "glob")
    return GroupRule(group, pattern, "exact")


def claim_values(claims: Mapping[str, Any], claim: str) -> list[str]:
    """The string values of a group claim: a list, or one string; a dotted path reaches into objects.

    A claim whose name itself holds dots (``https://example.org/groups``) is found by that name first.

    Examples
    --------
    >>> claim_values({"groups": ["a", "b", 3]}, "groups")
    ['a', 'b']
    >>> claim_values({"isMemberOf": "a"}, "isMemberOf")
    ['a']
    >>> claim_values({"realm_access": {"roles": ["observer"]}}, "realm_access.roles")
    ['observer']
    >>> claim_values({}, "groups")
    []
    """
    value: Any = claims.get(claim) if claim in claims else claims
    if claim not in claims:
        for part in claim.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [item for item in value if isinstance(item, str)]
    return []


def mapped_groups(rules: Iterable[GroupRule], values: Iterable[str]) -> set[str]:
    """The TOM groups that claim values map to.

    Examples
    --------
    >>> rules = compile_group_map({"Observers": ["tom-obs"], "LVK": ["glob:lvk-*"], "Other": ["re:x+"]})
    >>> sorted(mapped_groups(rules, ["lvk-cbc", "tom-obs", "unrelated"]))
    ['LVK', 'Observers']
    """
    values = list(values)
    return {rule.group for rule in rules if any(rule.matches(value) for value in values)}
