"""Tie-break towards sets the tenant already has (an existing group, an exact attribute value).

After the cover is found, each group is offered a swap for a preferred set, made only when the whole family
still covers every app exactly (an exact criterion, see `prefer`), so the count never grows and exactness never
breaks. Greedy and local: it finds the swaps that are one-for-one, not covers that would need several groups to
change at once. Works on mailbox classes (see exact.Instance): a preferred set that splits
a class (holds some but not all mailboxes that exactly the same apps hold) cannot replace a group one-for-one
without changing some app's set, so it is skipped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np


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
    """Swap groups for preferred class sets where the family stays exact; returns (groups, swaps made).

    For a group g and an app (row) r holding it, the classes of g that no other group inside r covers are g's
    "unique" classes in r. Swapping g for p keeps every app exact if and only if p contains all of g's unique
    classes (over all rows) and fits inside every row where g has unique classes: those rows keep their mailboxes
    through p, the other classes of g are covered by other groups, and an app only gaining p (a set inside it)
    cannot change. Per-row class counts make this check O(|g| x rows holding g), updated after each swap.
    """
    if not preferred or not groups:
        return groups, 0
    row_sets = {int(r): frozenset(inst.row_set(int(r)).tolist()) for r in rows}
    rows_with: dict[int, list[int]] = defaultdict(list)      # class -> rows holding it
    for r, s in row_sets.items():
        for c in s:
            rows_with[c].append(r)
    class_deg = [len(rows_with.get(c, ())) for c in range(inst.d.shape[1])]
    memo: dict[frozenset[int], frozenset[int]] = {}

    def rows_containing(s: frozenset[int]) -> frozenset[int]:
        hit = memo.get(s)
        if hit is None:
            c0 = min(s, key=class_deg.__getitem__)      # the rarest class bounds the candidates
            hit = memo[s] = frozenset(r for r in rows_with.get(c0, ()) if s <= row_sets[r])
        return hit

    family = [frozenset(g.tolist()) for g in groups]
    in_family = set(family)
    pref_set = set(preferred)
    pref_with: dict[int, list[int]] = defaultdict(list)
    for pi, p in enumerate(preferred):
        for c in p:
            pref_with[c].append(pi)
    # count[r][c]: groups of the family inside row r that hold class c
    count: dict[int, dict[int, int]] = {r: {} for r in row_sets}
    group_rows: list[frozenset[int]] = []
    for g in family:
        hold = rows_containing(g)
        group_rows.append(hold)
        for r in hold:
            cr = count[r]
            for c in g:
                cr[c] = cr.get(c, 0) + 1
    swaps = 0
    for gi, g in enumerate(family):
        if g in pref_set:
            continue
        unique: set[int] = set()
        fit: frozenset[int] | None = None                    # classes of the rows where g is needed
        for r in group_rows[gi]:
            cr = count[r]
            u = [c for c in g if cr[c] == 1]
            if u:
                unique.update(u)
                fit = row_sets[r] if fit is None else fit & row_sets[r]
        if fit is None:
            continue                                         # g is needed nowhere: nothing to trade it for
        c0 = min(unique, key=lambda c: (len(pref_with.get(c, ())), c))
        cands = [preferred[pi] for pi in pref_with.get(c0, ())]
        cands = [p for p in cands if unique <= p and p <= fit and p not in in_family]
        if not cands:
            continue
        p = min(cands, key=lambda p: (len(p ^ g), len(p), sorted(p)))
        for r in group_rows[gi]:
            cr = count[r]
            for c in g:
                cr[c] -= 1
        hold = rows_containing(p)
        for r in hold:
            cr = count[r]
            for c in p:
                cr[c] = cr.get(c, 0) + 1
        group_rows[gi] = hold
        in_family.discard(g)
        in_family.add(p)
        family[gi] = p
        swaps += 1
    return [np.array(sorted(s)) for s in family], swaps
