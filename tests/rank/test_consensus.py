import pytest

from transferlab.rank._consensus import consensus, metric_ranks


def test_metric_ranks_higher_is_better_ties_share_best_and_nulls_stay_null():
    assert metric_ranks([0.5, None, 0.9, 0.5]) == [2, None, 1, 2]


def test_consensus_normalises_ranks_per_metric_so_partial_metrics_weigh_the_same():
    table = {
        "a": [3.0, 2.0, 1.0],  # model 0 first
        "b": [1.0, 3.0, 2.0],  # model 1 first
        "leep": [None, 0.0, -1.0],  # only models 1 and 2 scored: model 1 first
    }
    score, rank = consensus(table, 3)
    assert score[0] == pytest.approx(1 - (0.0 + 1.0) / 2)  # higher is better, like every metric
    assert score[1] == pytest.approx(1 - (0.5 + 0.0 + 0.0) / 3)
    assert score[2] == pytest.approx(1 - (1.0 + 0.5 + 1.0) / 3)
    assert rank == [2, 1, 3]


def test_consensus_ties_keep_zoo_order():
    score, rank = consensus({"a": [1.0, 1.0]}, 2)
    assert score == [1.0, 1.0] and rank == [1, 2]
