"""TransRate's fast path against the reference formula; TMI's kNN entropy against known entropies."""

import numpy as np
import pytest
from tests.conftest import make_blobs

from transferlab.errors import MetricError
from transferlab.rank import score
from transferlab.rank._stats import FeatureStats
from transferlab.rank.tmi import knn_entropy
from transferlab.rank.transrate import transrate


def _transrate_by_definition(f, y, eps=1e-4):
    """R(Z) - mean_c R(Z_c) written out with D x D log-determinants (the paper's formula)."""
    z = f - f.mean(0)

    def rate(a):
        return 0.5 * np.linalg.slogdet(np.eye(a.shape[1]) + a.T @ a / (len(a) * eps))[1]

    return rate(z) - np.mean([rate(z[y == c]) for c in range(y.max() + 1)])


@pytest.mark.parametrize(("n", "d", "c"), [(90, 12, 3), (40, 60, 4), (200, 5, 2), (130, 30, 5)])
def test_transrate_fast_paths_equal_the_definition(n, d, c):
    f, y = make_blobs(n // c, c, d, seed=n)
    expected = _transrate_by_definition(f, y)
    assert score("transrate", f, y) == pytest.approx(expected, rel=1e-9)
    shared = FeatureStats(f)
    _ = shared.cov_spectrum  # as after H-score: the eigenvalue path
    assert transrate(f, y, stats=shared) == pytest.approx(expected, rel=1e-9)


def test_transrate_rewards_separated_classes():
    near, y = make_blobs(50, 4, 16, sep=0.3, seed=1)
    far, _ = make_blobs(50, 4, 16, sep=5.0, seed=1)
    assert score("transrate", far, y) > score("transrate", near, y)


def test_knn_entropy_of_a_gaussian_and_a_uniform():
    rng = np.random.default_rng(0)
    g = rng.standard_normal((4000, 2)) * 1.5
    assert knn_entropy(g) == pytest.approx(np.log(2 * np.pi * np.e * 1.5**2), abs=0.08)  # d/2 log(2 pi e s^2)
    u = rng.uniform(0, 2, (4000, 3))
    assert knn_entropy(u) == pytest.approx(3 * np.log(2), abs=0.1)  # log volume


def test_tmi_raw_estimate_shifts_by_d_log_scale_and_duplicates_are_ignored():
    f, y = make_blobs(30, 3, 5, seed=2)
    raw = score("tmi", f, y, normalize=False, per_dimension=False)
    assert score("tmi", 3.0 * f, y, normalize=False, per_dimension=False) == pytest.approx(raw + 5 * np.log(3.0))
    dup = np.concatenate([f, f[:5]])
    assert score("tmi", dup, np.concatenate([y, y[:5]]), normalize=False, per_dimension=False) == pytest.approx(
        raw, abs=0.2)  # duplicates neither crash (log 0) nor dominate; the class priors shift a little
    with pytest.raises(MetricError, match="more than k=3 distinct examples"):
        score("tmi", f[:8], np.array([0, 0, 0, 1, 1, 1, 1, 1]))


def test_tmi_grows_with_within_class_spread():
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(3), 40)
    centres = rng.standard_normal((3, 10)) * 5
    tight = centres[y] + 0.1 * rng.standard_normal((120, 10))
    loose = centres[y] + 1.0 * rng.standard_normal((120, 10))
    assert score("tmi", loose, y) > score("tmi", tight, y)
