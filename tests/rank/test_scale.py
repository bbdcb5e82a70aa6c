"""Many classes (issue 11): the metrics computed without N x C or C x C arrays equal naive computations written out
here with per-class and per-pair loops; every default metric on 2,000 classes stays within a memory and time budget.

The naive versions run on small inputs, both with the default row blocks and with blocks of a few elements (many
blocks, a ragged last one), so the blocked code paths are the ones checked.
"""

import time
import tracemalloc

import numpy as np
import pytest
from scipy.special import digamma, softmax

from transferlab.rank import _stats as stats_mod
from transferlab.rank import list_metrics, metric_info, score
from transferlab.rank._stats import class_means

EPS = 1e-4


@pytest.fixture(params=["default_blocks", "tiny_blocks"])
def blocks(request, monkeypatch):
    if request.param == "tiny_blocks":
        monkeypatch.setattr(stats_mod, "BLOCK_ELEMENTS", 37)  # a row or two per block, ragged last block
    return request.param


def _data(c=12, d=5, seed=0, min_per_class=4, max_per_class=11, big=0):
    """Unequal classes around random centres; ``big`` classes get D + 3 rows (TransRate's D x D path)."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(min_per_class, max_per_class + 1, c)
    counts[:big] = d + 3
    y = np.repeat(np.arange(c), counts)
    rng.shuffle(y)
    f = 1.5 * rng.standard_normal((c, d))[y] + rng.standard_normal((len(y), d))
    logits = rng.standard_normal((len(y), 9)) + 2.0 * np.eye(9)[y % 9]
    p = np.exp(logits)
    return f, y, p / p.sum(1, keepdims=True)


def _naive_means(f, y):
    c = y.max() + 1
    means, counts = np.zeros((c, f.shape[1])), np.zeros(c)
    for i in range(len(y)):
        means[y[i]] += f[i]
        counts[y[i]] += 1
    return means / np.maximum(counts, 1)[:, None], counts


def test_class_means_equal_a_loop_and_keep_empty_classes_zero():
    f, y, _ = _data(c=30, d=7, seed=1)
    y = np.where(y == 4, 5, y)  # class 4 empty
    means, counts = class_means(f, y)
    ref_means, ref_counts = _naive_means(f, y)
    np.testing.assert_array_equal(counts, ref_counts)
    np.testing.assert_allclose(means, ref_means, rtol=1e-12, atol=1e-14)
    assert np.all(means[4] == 0) and counts[4] == 0
    means32, _ = class_means(f.astype(np.float32), y, 40)  # float32 rows, more classes than labels
    assert means32.shape == (40, 7)
    np.testing.assert_allclose(means32[:30], ref_means, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------------- source-probability
def test_leep_equals_a_loop(blocks):
    _, y, p = _data(c=15, seed=2)
    c = y.max() + 1
    joint = np.zeros((c, p.shape[1]))
    for i in range(len(y)):
        joint[y[i]] += p[i] / len(y)
    cond = joint / joint.sum(0)
    expected = np.mean([np.log(sum(p[i, z] * cond[y[i], z] for z in range(p.shape[1]))) for i in range(len(y))])
    assert score("leep", None, y, p) == pytest.approx(expected, rel=1e-10)


def test_nce_equals_a_loop():
    _, y, p = _data(c=15, seed=3)
    z = p.argmax(1)
    n = len(y)
    pair, source = {}, {}
    for a, b in zip(y, z, strict=True):
        pair[a, b] = pair.get((a, b), 0) + 1
        source[b] = source.get(b, 0) + 1
    expected = sum(k / n * np.log(k / source[b]) for (_, b), k in pair.items())
    assert score("nce", None, y, p) == pytest.approx(expected, rel=1e-12)


# ------------------------------------------------------------------------------------------------------- features
def _naive_logme(f, y, max_iter=11, tol=1e-3):
    n, d = f.shape
    sigma_all = np.linalg.eigvalsh(f.T @ f)
    sigma = sigma_all[sigma_all > 1e-20]
    evidences = []
    for c in range(y.max() + 1):
        t_y = (y == c).astype(float)
        alpha = beta = 1.0
        for _ in range(max_iter):
            t = alpha / beta
            gamma = np.sum(sigma / (sigma + t))
            m = np.linalg.solve(f.T @ f + t * np.eye(d), f.T @ t_y)
            m2, res2 = m @ m, np.sum((t_y - f @ m) ** 2)
            alpha, beta = gamma / (m2 + 1e-5), (n - gamma) / (res2 + 1e-5)
            if abs(alpha / beta - t) / t <= tol:
                break
        evidences.append(d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * np.sum(np.log(alpha + beta * sigma))
                         - (d - len(sigma)) / 2 * np.log(alpha)  # the evidence of all D dimensions
                         - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi))
    return np.mean(evidences) / n


@pytest.mark.parametrize("shape", [(20, 6), (5, 30)])  # N > D (class sums) and N <= D (one-hot projection)
def test_logme_equals_a_per_class_solve(shape):
    c, d = shape
    f, y, _ = _data(c=c, d=d, seed=4, max_per_class=5)
    assert score("logme", f, y) == pytest.approx(_naive_logme(f, y), rel=1e-8)


def _naive_lda_posteriors(f, y, cov_inv):
    means, counts = _naive_means(f, y)
    logits = np.array([[x @ cov_inv @ mu - 0.5 * mu @ cov_inv @ mu + np.log(counts[k] / len(y))
                        for k, mu in enumerate(means)] for x in f])
    return softmax(logits, axis=1)


def test_etran_reference_lda_equals_a_loop(blocks):
    f, y, _ = _data(c=14, d=4, seed=5)
    post = _naive_lda_posteriors(f, y, np.eye(4))
    expected = np.mean(post[np.arange(len(y)), y])
    assert score("etran_lda", f, y) == pytest.approx(expected, rel=1e-10)
    assert score("etran", f, y) == pytest.approx(0.15 * score("etran_energy", f, y) + 0.85 * expected, rel=1e-10)


def _naive_within(f, y):
    """S_w: the biased class covariances weighted by class size, a loop over classes."""
    counts = np.bincount(y)
    return sum(counts[k] / len(y) * np.cov(f[y == k], rowvar=False, bias=True) for k in range(len(counts)))


def _naive_shrinkage(sw):
    x = sw.sum(1)
    for _ in range(3):  # the reference's power iteration
        v = sw @ x / np.linalg.norm(sw @ x)
        x = sw @ v / np.linalg.norm(sw @ v)
    return max(np.exp(-5.0 * (x @ sw @ v)), 1e-10)


def _shrunk(sw, lam):
    d = len(sw)
    return (1 - lam) * sw + lam * np.trace(sw) / d * np.eye(d)


def test_sfda_and_fisher_lda_equal_a_loop(blocks):
    f, y, _ = _data(c=13, d=5, seed=6)
    n, c = len(y), y.max() + 1
    means, _ = _naive_means(f, y)
    sw = _naive_within(f, y)
    lam = _naive_shrinkage(sw)
    p1 = _naive_lda_posteriors(f, y, np.linalg.inv(_shrunk(sw, lam)))
    assert score("etran_lda", f, y, lda="fisher") == pytest.approx(np.mean(p1[np.arange(n), y]), rel=1e-9)
    mixed = np.empty_like(f)
    for i in range(n):
        w = softmax(p1[i])[y[i]]
        others = np.mean([means[k] for k in range(c) if k != y[i]], axis=0)
        mixed[i] = w * f[i] + (1 - w) * others
    p2 = _naive_lda_posteriors(mixed, y, np.linalg.inv(_shrunk(_naive_within(mixed, y), lam)))
    assert score("sfda", f, y) == pytest.approx(np.mean(p2[np.arange(n), y]), rel=1e-9)


def _naive_gbc(f, y, spherical):
    means, _ = _naive_means(f, y)
    c = len(means)
    var = np.maximum(np.array([f[y == k].var(0) for k in range(c)]), 1e-4)
    if spherical:
        var = var.mean(1, keepdims=True)  # one variance per class; its log term is not multiplied by D
    total = 0.0
    for a in range(c):
        for b in range(c):
            if a == b:
                continue
            s = 0.5 * (var[a] + var[b])
            bd = np.sum((means[a] - means[b]) ** 2 / s) / 8 + 0.5 * (
                np.sum(np.log(s)) - 0.5 * np.sum(np.log(var[a])) - 0.5 * np.sum(np.log(var[b])))
            total += np.exp(-bd)
    return -total


@pytest.mark.parametrize("gaussian_type", ["spherical", "diagonal"])
def test_gbc_equals_a_loop_over_class_pairs(gaussian_type, blocks):
    f, y, _ = _data(c=17, d=4, seed=7)
    expected = _naive_gbc(f, y, gaussian_type == "spherical")
    assert score("gbc", f, y, gaussian_type=gaussian_type, pca=None) == pytest.approx(expected, rel=1e-10)
    assert score("gbc", f, y, gaussian_type=gaussian_type) == pytest.approx(expected, rel=1e-9)  # PCA: a rotation


def test_tmi_equals_a_loop():
    f, y, _ = _data(c=9, d=3, seed=8, min_per_class=5)
    f[np.flatnonzero(y == 2)[:2]] = f[np.flatnonzero(y == 2)[2]]  # repeated rows in a class: counted once
    g = f / np.linalg.norm(f, axis=1, keepdims=True)
    h = 0.0
    for c in range(y.max() + 1):
        x = np.array(sorted({tuple(r) for r in g[y == c]}))
        n = len(x)
        dist = np.abs(x[:, None, :] - x[None, :, :]).max(-1)
        r = np.sort(dist, axis=1)[:, 3]
        h += np.sum(y == c) / len(y) * (digamma(n) - digamma(3) + 3 * np.mean(np.log(2 * r)))
    assert score("tmi", f, y) == pytest.approx(h / 3, rel=1e-10)


def test_transrate_equals_the_definition_with_many_class_sizes():
    f, y, _ = _data(c=25, d=6, seed=9, min_per_class=1, max_per_class=8, big=3)
    z = f - f.mean(0)

    def rate(a):
        return 0.5 * np.linalg.slogdet(np.eye(6) + a.T @ a / (len(a) * EPS))[1]

    expected = rate(z) - np.mean([rate(z[y == c]) for c in range(y.max() + 1)])
    assert score("transrate", f, y) == pytest.approx(expected, rel=1e-9)


def test_hscore_equals_the_definition():
    f, y, _ = _data(c=20, d=5, seed=10)
    means, _ = _naive_means(f, y)
    expected = np.trace(np.linalg.pinv(np.cov(f, rowvar=False)) @ np.cov(means[y], rowvar=False))
    assert score("hscore", f, y) == pytest.approx(expected, rel=1e-9)


def test_ped_simulation_equals_a_loop_over_class_pairs(blocks):
    from transferlab.rank.ped import simulate

    f, y, _ = _data(c=11, d=3, seed=11)
    m_g, s_g = f.mean(0) + 0.1, f.std(0) * 1.3
    x, c = f.copy(), y.max() + 1
    first = None
    for _ in range(6):
        z = (x - m_g) / s_g
        means, _ = _naive_means(z, y)
        radius = np.sqrt([np.mean(np.sum((z[y == k] - means[k]) ** 2, 1)) for k in range(c)])
        disp = np.zeros_like(means)
        for a in range(c):
            for b in range(c):
                dist = np.linalg.norm(means[a] - means[b])
                force = max(0.6 * (radius[a] + radius[b]) - dist, 0.0) if a != b else 0.0
                if dist > 0:
                    disp[a] += min(0.5 * 0.1**2 * force, force) / dist * (means[a] - means[b])
        change = np.abs(disp).sum()
        first = change if first is None else first
        if first == 0 or change / first <= 0.5:
            break
        x = (z + disp[y]) * s_g + m_g
    moved, _ = simulate(f, y, m_g, s_g)
    np.testing.assert_allclose(moved, x, rtol=1e-10, atol=1e-12)
    assert not np.allclose(moved, f)  # the classes did move
    assert score("ped", f, y, source_mean=m_g, source_std=s_g) == pytest.approx(score("sfda", x, y), rel=1e-9)


# ------------------------------------------------------------------------------------------------------- the budget
def test_every_default_metric_on_2000_classes_within_memory_and_time():
    """N = 12,000, C = 2,000, D = 16: before issue 11, SFDA alone held three N x C float64 arrays (576 MB) and
    class means a dense C x N indicator (192 MB) per call."""
    names = [m for m in list_metrics() if metric_info(m).get("default", True) and m not in ("knn", "linear_probe")]
    assert "nleep" not in names and "ped" not in names and "sfda" in names
    rng = np.random.default_rng(0)
    c, per_class, d = 2000, 6, 16
    y = rng.permutation(np.repeat(np.arange(c), per_class))
    f = rng.standard_normal((c, d))[y] + 0.5 * rng.standard_normal((len(y), d))
    p = softmax(rng.standard_normal((len(y), 100)), axis=1)
    tracemalloc.start()
    try:
        t = time.perf_counter()
        values = {m: score(m, f, y, p) for m in names}
        seconds = time.perf_counter() - t
        peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    assert all(np.isfinite(v) for v in values.values())
    assert peak_mb < 300, f"peak {peak_mb:.0f} MB"
    assert seconds < 20, f"{seconds:.1f} s"
