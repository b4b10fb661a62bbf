import math

import pytest

from slimcv.nas.pareto import (
    crowding_distances,
    dominates,
    non_dominated_sort,
    pareto_front,
    pareto_ranks,
)


def test_dominates_needs_strictly_better_somewhere():
    assert dominates((1, 1), (2, 2))
    assert dominates((1, 2), (2, 2))
    assert not dominates((2, 2), (2, 2))  # equal points do not dominate each other
    assert not dominates((1, 3), (2, 2))  # a trade-off


def test_front_keeps_ties_and_drops_dominated():
    points = [(1, 5), (2, 2), (2, 2), (3, 3), (5, 1), (4, 4), (1, 6)]
    # (3,3) and (4,4) are dominated by (2,2); (1,6) by (1,5); both (2,2) stay (a tie).
    assert pareto_front(points) == [0, 1, 2, 4]


def test_non_dominated_sort_layers():
    points = [(1, 5), (2, 2), (3, 3), (5, 1), (4, 4), (6, 6)]
    assert non_dominated_sort(points) == [[0, 1, 3], [2], [4], [5]]
    assert pareto_ranks(points) == [0, 0, 1, 0, 2, 3]


def test_crowding_distance_extremes_infinite_middle_normalised():
    points = [(0.0, 4.0), (1.0, 2.0), (4.0, 0.0)]
    distance = crowding_distances(points)
    assert math.isinf(distance[0]) and math.isinf(distance[2])
    # Neighbour gaps over the range in each coordinate: 4/4 + 4/4.
    assert distance[1] == pytest.approx(2.0)


def test_hypervolume_2d_counts_each_dominated_cell_once() -> None:
    from slimcv.nas.pareto import hypervolume_2d

    reference = (4.0, 4.0)
    # A single point dominates the rectangle to the reference.
    assert hypervolume_2d([(1.0, 2.0)], reference) == 6.0
    # A staircase: (1,3) adds 3x1, (2,1) adds 2x2 below it; the dominated (3,3) adds nothing.
    assert hypervolume_2d([(1.0, 3.0), (2.0, 1.0), (3.0, 3.0)], reference) == 7.0
    # Points outside the reference box count for nothing.
    assert hypervolume_2d([(5.0, 0.0), (0.0, 5.0)], reference) == 0.0
    # Adding a point that improves the front increases the volume.
    assert hypervolume_2d([(1.0, 3.0), (2.0, 1.0), (0.5, 3.5)], reference) > 7.0
