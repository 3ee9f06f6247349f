"""Tests of protocols.metrics on small matrices worked out by hand."""

import numpy as np
import pytest

from hlopsim.protocols.metrics import average_accuracy, backward_transfer, forgetting, summarize

NAN = np.nan

# Two tasks, fractions. R[i, j] = accuracy on task j after task i.
#   ACC        = (0.7 + 0.8) / 2      = 0.75
#   BWT        = R[1,0] - R[0,0]      = 0.7 - 0.9 = -0.2
#   forgetting = max(R[0,0]) - R[1,0] = 0.9 - 0.7 = 0.2
R2 = np.array([
    [0.9, 0.1],
    [0.7, 0.8],
])

# Three tasks, percent. Task 0 improves after task 1 (93 > 90), and
# R[0, 1] = 99 is measured before task 1 was trained, so it must not count
# as task 1's best accuracy.
#   ACC        = (70 + 85 + 60) / 3                 = 215 / 3
#   BWT        = ((70 - 90) + (85 - 95)) / 2        = (-20 - 10) / 2 = -15
#   forgetting: task 0: max(90, 93) - 70 = 23
#               task 1: max(95)     - 85 = 10 (not 99 - 85 = 14)
#               mean = (23 + 10) / 2                = 16.5
R3 = np.array([
    [90.0, 99.0, 12.0],
    [93.0, 95.0, 11.0],
    [70.0, 85.0, 60.0],
])


def test_two_tasks():
    assert average_accuracy(R2) == pytest.approx(0.75)
    assert backward_transfer(R2) == pytest.approx(-0.2)
    assert forgetting(R2) == pytest.approx(0.2)


def test_three_tasks():
    assert average_accuracy(R3) == pytest.approx(215 / 3)
    assert backward_transfer(R3) == pytest.approx(-15.0)
    assert forgetting(R3) == pytest.approx(16.5)


def test_summarize_keys_and_values():
    assert summarize(R3) == pytest.approx({"ACC": 215 / 3, "BWT": -15.0, "forgetting": 16.5})
    assert set(summarize(R2)) == {"ACC", "BWT", "forgetting"}


def test_unused_upper_triangle_may_be_nan():
    # Tasks not trained yet were not evaluated: same metrics as R3 except ACC,
    # which uses the full last row and so is unchanged too.
    R = R3.copy()
    R[0, 1:] = NAN
    R[1, 2] = NAN
    assert summarize(R) == pytest.approx(summarize(R3))


def test_single_task():
    R = [[0.8]]
    assert summarize(R) == {"ACC": 0.8, "BWT": 0.0, "forgetting": 0.0}


def test_accepts_nested_lists():
    assert average_accuracy(R2.tolist()) == pytest.approx(0.75)


@pytest.mark.parametrize("function", [average_accuracy, backward_transfer, forgetting, summarize])
def test_non_square_raises(function):
    with pytest.raises(ValueError, match=r"square.*\(2, 3\)"):
        function(np.zeros((2, 3)))


@pytest.mark.parametrize("bad", [np.zeros(3), np.zeros((2, 2, 2)), np.zeros((0, 0))])
def test_wrong_shape_raises(bad):
    with pytest.raises(ValueError, match="accuracy matrix"):
        summarize(bad)


def test_nan_in_used_entry_raises():
    # incomplete run: the last row was not measured yet
    R = R3.copy()
    R[2] = NAN
    with pytest.raises(ValueError, match=r"R\[2, 0\] is nan"):
        average_accuracy(R)
    # a missing diagonal entry breaks BWT and forgetting, not ACC
    R = R3.copy()
    R[1, 1] = NAN
    assert average_accuracy(R) == pytest.approx(215 / 3)
    with pytest.raises(ValueError, match=r"R\[1, 1\]"):
        backward_transfer(R)
    with pytest.raises(ValueError, match=r"R\[1, 1\]"):
        forgetting(R)
