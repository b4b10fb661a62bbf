"""Pareto dominance, non-dominated sorting and crowding distance.

Points are sequences of figures where *lower is better* in every coordinate (callers negate
the maximised ones, see :meth:`~slimcv.nas.objectives.Objective.minimized`). Equal points do
not dominate each other, so ties are all kept on the front.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Point = Sequence[float]


def dominates(a: Point, b: Point) -> bool:
    """Whether ``a`` is no worse than ``b`` everywhere and strictly better somewhere."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True)
    )


def pareto_front(points: Sequence[Point]) -> list[int]:
    """Indices of the non-dominated points, in input order."""
    return [
        i
        for i, p in enumerate(points)
        if not any(dominates(q, p) for j, q in enumerate(points) if j != i)
    ]


def non_dominated_sort(points: Sequence[Point]) -> list[list[int]]:
    """Fronts of indices: the Pareto front first, then the front of what remains, and so on
    (Deb et al.'s fast non-dominated sort, O(M N^2))."""
    n = len(points)
    dominated_by: list[list[int]] = [[] for _ in range(n)]
    counts = [0] * n
    for i in range(n):
        for j in range(i + 1, n):
            if dominates(points[i], points[j]):
                dominated_by[i].append(j)
                counts[j] += 1
            elif dominates(points[j], points[i]):
                dominated_by[j].append(i)
                counts[i] += 1
    fronts: list[list[int]] = []
    current = [i for i in range(n) if counts[i] == 0]
    while current:
        fronts.append(current)
        following = []
        for i in current:
            for j in dominated_by[i]:
                counts[j] -= 1
                if counts[j] == 0:
                    following.append(j)
        current = sorted(following)
    return fronts


def pareto_ranks(points: Sequence[Point]) -> list[int]:
    """Each point's front number (0 for the Pareto front)."""
    ranks = [0] * len(points)
    for rank, front in enumerate(non_dominated_sort(points)):
        for i in front:
            ranks[i] = rank
    return ranks


def crowding_distances(points: Sequence[Point]) -> list[float]:
    """NSGA-II's crowding distance of each point within ``points`` (one front): the sum over
    coordinates of the normalised gap between its neighbours; extremes get infinity."""
    n = len(points)
    if n <= 2:
        return [math.inf] * n
    distance = [0.0] * n
    for m in range(len(points[0])):
        order = sorted(range(n), key=lambda i: points[i][m])
        low, high = points[order[0]][m], points[order[-1]][m]
        distance[order[0]] = distance[order[-1]] = math.inf
        if high == low:
            continue
        for k in range(1, n - 1):
            gap = points[order[k + 1]][m] - points[order[k - 1]][m]
            distance[order[k]] += gap / (high - low)
    return distance


def hypervolume_2d(points: Sequence[Point], reference: Point) -> float:
    """Area dominated by ``points`` and bounded by ``reference`` (two minimised objectives).

    The usual single number for "how good is a front": it grows when any member moves toward
    the ideal corner or a new trade-off is found, so two searches are compared by their
    hypervolumes against one shared reference point. Points not strictly better than the
    reference in both coordinates add nothing.
    """
    inside = sorted(
        (float(p[0]), float(p[1]))
        for p in points
        if len(p) == 2 and p[0] < reference[0] and p[1] < reference[1]
    )
    area = 0.0
    best_y = float(reference[1])
    for x, y in inside:
        if y < best_y:
            area += (reference[0] - x) * (best_y - y)
            best_y = y
    return area
