"""Multi-party grouping: records of several agencies that refer to one entity.

Greedy, highest score first, like anonlink's solver, but a merge must be
supported by *every* pair across the two groups (complete linkage): A~B and
B~C do not pull A and C together unless A~C as well. Records of the same
agency may share a group (within-agency duplicates) unless ``max_per_owner``
forbids it: for every owner (1-to-1 linkage between deduplicated files) or
only for the owners that declared their files deduplicated (link-and-dedupe
in one run, where the other owners' duplicates are still found).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from numba import njit

from linkage.matching.candidates import CandidatePairs

__all__ = ["Grouping", "greedy_groups", "greedy_groups_reference"]


@dataclass(frozen=True)
class Grouping:
    """``labels[r]`` is record r's group (0..groups-1) or -1 when it matched nothing.

    ``weakest_score[g]`` is the lowest pair score inside group g: the link a
    sceptic would question first, and what confidence is derived from.
    """

    labels: np.ndarray
    weakest_score: np.ndarray

    @property
    def group_count(self) -> int:
        return int(self.weakest_score.shape[0])

    def members(self) -> list[np.ndarray]:
        """Record indices of each group, in label order."""
        order = np.argsort(self.labels, kind="stable")
        sorted_labels = self.labels[order]
        start = int(np.searchsorted(sorted_labels, 0))
        boundaries = np.searchsorted(sorted_labels[start:], np.arange(self.group_count + 1))
        return [order[start + boundaries[g]: start + boundaries[g + 1]]
                for g in range(self.group_count)]


def greedy_groups(
    pairs: CandidatePairs,
    record_count: int,
    owners: np.ndarray,
    *,
    max_per_owner: int | Mapping[int, int] | None = None,
) -> Grouping:
    """Group records from candidate pairs (the compiled path; same result as the reference).

    Args:
        pairs: candidate pairs at or above the threshold, any order, each pair once.
        record_count: total number of records.
        owners: owner (agency or file) index of every record.
        max_per_owner: at most this many records of one owner per group
            (``1`` gives 1-to-1 linkage); a mapping sets the limit per owner value
            (owners not in it are unlimited); ``None`` allows duplicates.

    Returns:
        The grouping; singletons are labelled -1.
    """
    if len(pairs) == 0:
        return Grouping(np.full(record_count, -1, np.int64), np.zeros(0, np.float64))
    order = np.lexsort((pairs.right, pairs.left, -pairs.score))
    low = np.minimum(pairs.left, pairs.right).astype(np.int64)
    high = np.maximum(pairs.left, pairs.right).astype(np.int64)
    owner_values, owner_codes = np.unique(np.asarray(owners), return_inverse=True)
    limits = _owner_limits(owner_values, max_per_owner)
    labels, weakest = _greedy_compiled(
        low, high, pairs.score.astype(np.float64), order.astype(np.int64), record_count,
        owner_codes.astype(np.int64), limits)
    return Grouping(labels, weakest)


def _owner_limits(owner_values: np.ndarray, max_per_owner) -> np.ndarray:
    """Limit per owner code (-1 for none)."""
    if max_per_owner is None:
        return np.full(max(owner_values.size, 1), -1, np.int64)
    if isinstance(max_per_owner, Mapping):
        return np.array([int(max_per_owner.get(value, -1)) for value in owner_values.tolist()]
                        or [-1], np.int64)
    return np.full(max(owner_values.size, 1), int(max_per_owner), np.int64)


@njit(cache=True, nogil=True)
def _greedy_compiled(low, high, score, order, n, owners, limits):
    keys = low * n + high
    by_key = np.argsort(keys)
    sorted_keys = keys[by_key]
    sorted_scores = score[by_key]
    group_of = np.arange(n)
    first = np.arange(n)
    last = np.arange(n)
    follow = np.full(n, -1, np.int64)
    size = np.ones(n, np.int64)
    weak = np.ones(n, np.float64)
    counts = np.zeros(limits.shape[0], np.int64)
    limited = limits.max() >= 0
    for index in order:
        ga, gb = group_of[low[index]], group_of[high[index]]
        if ga == gb:
            continue
        if limited:
            fits = True
            for side in (ga, gb):
                member = first[side]
                while member >= 0:
                    owner = owners[member]
                    counts[owner] += 1
                    if 0 <= limits[owner] < counts[owner]:
                        fits = False
                    member = follow[member]
            for side in (ga, gb):
                member = first[side]
                while member >= 0:
                    counts[owners[member]] = 0
                    member = follow[member]
            if not fits:
                continue
        lowest = min(weak[ga], weak[gb], score[index])
        complete = True
        # Two singletons: the only cross pair is this one (the common case; no lookup).
        x = first[ga] if size[ga] + size[gb] > 2 else -1
        while x >= 0 and complete:
            y = first[gb]
            while y >= 0:
                key = min(x, y) * n + max(x, y)
                position = np.searchsorted(sorted_keys, key)
                if position == sorted_keys.shape[0] or sorted_keys[position] != key:
                    complete = False
                    break
                lowest = min(lowest, sorted_scores[position])
                y = follow[y]
            x = follow[x]
        if not complete:
            continue
        big, small = (ga, gb) if size[ga] >= size[gb] else (gb, ga)
        member = first[small]
        while member >= 0:
            group_of[member] = big
            member = follow[member]
        follow[last[big]] = first[small]
        last[big] = last[small]
        size[big] += size[small]
        weak[big] = lowest
    smallest = np.full(n, n, np.int64)
    for record in range(n):
        g = group_of[record]
        if size[g] > 1 and record < smallest[g]:
            smallest[g] = record
    heads = np.flatnonzero(smallest < n)
    ranking = np.argsort(smallest[heads])
    label_of = np.full(n, -1, np.int64)
    weakest = np.empty(heads.shape[0], np.float64)
    for label in range(ranking.shape[0]):
        g = heads[ranking[label]]
        label_of[g] = label
        weakest[label] = weak[g]
    labels = np.full(n, -1, np.int64)
    for record in range(n):
        g = group_of[record]
        if size[g] > 1:
            labels[record] = label_of[g]
    return labels, weakest


def greedy_groups_reference(
    pairs: CandidatePairs,
    record_count: int,
    owners: np.ndarray,
    *,
    max_per_owner: int | Mapping[int, int] | None = None,
) -> Grouping:
    """Readable reference of ``greedy_groups`` (pure Python, same arguments and result);
    tests check they agree."""
    order = np.lexsort((pairs.right, pairs.left, -pairs.score))
    lefts = pairs.left[order].tolist()
    rights = pairs.right[order].tolist()
    scores = pairs.score[order].tolist()
    pair_score = {(min(a, b), max(a, b)): s for a, b, s in zip(lefts, rights, scores)}
    group_of: dict[int, int] = {}
    members: dict[int, list[int]] = {}
    weakest: dict[int, float] = {}
    owner_list = owners.tolist()
    next_group = 0
    for a, b in zip(lefts, rights):
        group_a, group_b = group_of.get(a), group_of.get(b)
        if group_a is not None and group_a == group_b:
            continue
        side_a = members[group_a] if group_a is not None else [a]
        side_b = members[group_b] if group_b is not None else [b]
        if max_per_owner is not None and not _owners_fit(side_a, side_b, owner_list, max_per_owner):
            continue
        cross = [pair_score.get((min(x, y), max(x, y))) for x in side_a for y in side_b]
        if any(s is None for s in cross):
            continue
        low = min(min(cross), weakest.get(group_a, 1.0), weakest.get(group_b, 1.0))
        if group_a is None and group_b is None:
            target = next_group
            next_group += 1
            members[target] = [a, b]
        else:
            if group_a is None or (group_b is not None and len(side_b) > len(side_a)):
                target, joining = group_b, side_a
                dropped = group_a
            else:
                target, joining = group_a, side_b
                dropped = group_b
            members[target].extend(joining)
            if dropped is not None:
                del members[dropped]
                weakest.pop(dropped, None)
        for record in members[target]:
            group_of[record] = target
        weakest[target] = low
    labels = np.full(record_count, -1, dtype=np.int64)
    weakest_score = np.zeros(len(members), dtype=np.float64)
    for new_label, old in enumerate(sorted(members, key=lambda g: min(members[g]))):
        labels[members[old]] = new_label
        weakest_score[new_label] = weakest[old]
    return Grouping(labels, weakest_score)


def _owners_fit(side_a: list[int], side_b: list[int], owners: list, limit) -> bool:
    counts: dict = {}
    for record in side_a + side_b:
        owner = owners[record]
        counts[owner] = counts.get(owner, 0) + 1
        most = limit.get(owner) if isinstance(limit, Mapping) else limit
        if most is not None and counts[owner] > most:
            return False
    return True
