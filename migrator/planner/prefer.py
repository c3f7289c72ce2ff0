"""Tie-break towards sets the tenant already has (an existing group, an exact attribute value).

After the cover is found, each group is offered a swap for a preferred set: the swap is kept only when the
whole family still covers every app exactly (checked for every app the swap can touch), so the count never grows
and exactness never breaks. Greedy and local: it finds the swaps that are one-for-one, not covers that would
need several groups to change at once. Works on mailbox classes (see exact.Instance): a preferred set that splits
a class (holds some but not all mailboxes that exactly the same apps hold) cannot replace a group one-for-one
without changing some app's set, so it is skipped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np

MAX_TRIES = 20_000          # swap checks in all; the pass is a tie-break, not worth unbounded time


def preferred_classes(inst, preferred: Iterable[frozenset[str]]) -> list[frozenset[int]]:
    """Preferred mailbox sets as sets of whole mailbox classes (others dropped), in a deterministic order."""
    index = {m: j for j, m in enumerate(inst.mailboxes)}
    class_size = np.bincount(inst.mailbox_class, minlength=inst.d.shape[1])
    out = set()
    for p in preferred:
        if not p or any(m not in index for m in p):
            continue                                     # a mailbox no app holds: never inside any app's set
        classes = [int(inst.mailbox_class[index[m]]) for m in p]
        uniq = set(classes)
        if sum(int(class_size[c]) for c in uniq) == len(set(p)):
            out.add(frozenset(uniq))
    return sorted(out, key=lambda s: (len(s), sorted(s)))


def prefer(inst, rows: np.ndarray, groups: list[np.ndarray], preferred: list[frozenset[int]]
           ) -> tuple[list[np.ndarray], int]:
    """Swap groups for preferred class sets where the family stays exact; returns (groups, swaps made)."""
    if not preferred or not groups:
        return groups, 0
    row_sets = {int(r): frozenset(inst.row_set(int(r)).tolist()) for r in rows}
    rows_with: dict[int, list[int]] = defaultdict(list)      # class -> rows holding it
    for r, s in row_sets.items():
        for c in s:
            rows_with[c].append(r)
    family = [frozenset(g.tolist()) for g in groups]
    in_family = set(family)
    groups_with: dict[int, set[int]] = defaultdict(set)       # class -> family indices touching it
    for gi, g in enumerate(family):
        for c in g:
            groups_with[c].add(gi)
    pref_with: dict[int, list[int]] = defaultdict(list)
    for pi, p in enumerate(preferred):
        for c in p:
            pref_with[c].append(pi)
    pref_set = set(preferred)
    tries, swaps = 0, 0

    class_deg = [len(rows_with.get(c, ())) for c in range(inst.d.shape[1])]
    memo: dict[frozenset[int], set[int]] = {}

    def rows_containing(s: frozenset[int]) -> set[int]:
        hit = memo.get(s)
        if hit is None:
            c0 = min(s, key=class_deg.__getitem__)      # the rarest class bounds the candidates
            hit = memo[s] = {r for r in rows_with.get(c0, ()) if s <= row_sets[r]}
        return hit

    def still_exact(r: int, gi: int, p: frozenset[int]) -> bool:
        """Row r holds group gi. Without it (and with p, if p fits in r), is every class of gi still covered?
        Classes outside gi were covered by other groups already; rows that do not hold gi only gain p, which
        never breaks them (a group inside the row adds nothing outside it)."""
        target = row_sets[r]
        got: set[int] = set(p) if p <= target else set()
        for c in family[gi]:
            if c in got:
                continue
            for gj in groups_with.get(c, ()):
                if gj != gi and family[gj] <= target:
                    got |= family[gj]
                    break
            else:
                return False
        return True

    for gi in range(len(family)):
        g = family[gi]
        if g in pref_set:
            continue
        cands = sorted({pi for c in g for pi in pref_with.get(c, ())},
                       key=lambda pi: (len(preferred[pi] ^ g), len(preferred[pi]), sorted(preferred[pi])))
        rows_g = rows_containing(g)
        for pi in cands:
            p = preferred[pi]
            if p in in_family:
                continue
            tries += 1
            if tries > MAX_TRIES:
                return [np.array(sorted(s)) for s in family], swaps
            if rows_containing(p) and all(still_exact(r, gi, p) for r in sorted(rows_g)):
                for c in g:
                    groups_with[c].discard(gi)
                for c in p:
                    groups_with[c].add(gi)
                in_family.discard(g)
                in_family.add(p)
                family[gi] = p
                swaps += 1
                break
    return [np.array(sorted(s)) for s in family], swaps
