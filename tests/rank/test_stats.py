import numpy as np
import pytest

from transferlab.rank._stats import FeatureStats, SymmetricSpectrum


@pytest.mark.parametrize("n, rank", [(1, 1), (2, 2), (3, 3), (40, 40), (60, 25)])
def test_spectrum_projection_equals_a_full_eigendecomposition(n, rank):
    rng = np.random.default_rng(n)
    x = rng.standard_normal((n, rank))
    a = x @ x.T  # PSD, rank-deficient when rank < n
    b = rng.standard_normal((n, 7))
    w, v = np.linalg.eigh(a)
    spec = SymmetricSpectrum(a)
    np.testing.assert_allclose(spec.w, w, atol=1e-10 * max(1.0, w.max()))
    # eigenvectors are defined up to sign (and rotation inside repeated eigenvalues): compare what the metrics use
    p = spec.project(b)
    np.testing.assert_allclose((p * p).sum(0), (b * b).sum(0), rtol=1e-10)
    big = w > 1e-8 * w.max()
    np.testing.assert_allclose((p[big] ** 2), (v.T @ b)[big] ** 2, rtol=1e-6, atol=1e-9)


def test_feature_stats_covariance_from_the_gram_matrix():
    f = np.random.default_rng(0).standard_normal((50, 6)) * 3 + 10
    np.testing.assert_allclose(FeatureStats(f).cov, np.cov(f, rowvar=False), rtol=1e-10)
    wide = np.random.default_rng(1).standard_normal((5, 9))
    np.testing.assert_allclose(FeatureStats(wide).cov, np.cov(wide, rowvar=False), rtol=1e-10)


@pytest.mark.parametrize("metric", ["hscore", "hscore_shrinkage"])
def test_hscore_solve_path_equals_pseudo_inverse_path(metric, monkeypatch):
    from tests.conftest import make_blobs

    from transferlab.rank import hscore as mod
    from transferlab.rank import score

    f, y = make_blobs(30, 4, 12, seed=7)
    fast = score(metric, f, y)
    monkeypatch.setattr(mod, "_WELL_CONDITIONED", np.inf)  # force the eigenvector / pinv path
    assert score(metric, f, y) == pytest.approx(fast, rel=1e-10)


def test_top_vectors_are_the_leading_eigenvectors():
    import scipy.linalg

    from transferlab.rank._stats import SymmetricSpectrum

    rng = np.random.default_rng(4)
    a = rng.standard_normal((200, 40))
    a = a.T @ a
    w, v = scipy.linalg.eigh(a)
    top = SymmetricSpectrum(a).top_vectors(6)
    np.testing.assert_allclose(np.abs(top.T @ v[:, -6:]), np.eye(6), atol=1e-10)  # same vectors up to sign
    np.testing.assert_allclose(a @ top, top * w[-6:], atol=1e-9)
