"""The one logistic-regression probe (multinomial, C = 1, lbfgs): fit's ``linear_probe`` head and bench's
linear-probe ground truth."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np


def logistic_probe(features: Any, labels: Any, num_classes: int, seed: int = 0,
                   max_iter: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """``(weight [C, D], bias [C])`` of a logistic regression on ``features``; classes absent from ``labels`` get
    bias -1e4 (they can never win), and a two-class problem becomes the equivalent softmax pair."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    f = np.asarray(features, dtype=np.float64)
    with warnings.catch_warnings():  # lbfgs may stop at max_iter on unscaled features: fine for a probe
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression(C=1.0, max_iter=max_iter, random_state=seed).fit(f, labels)
    coef = np.zeros((num_classes, f.shape[1]))
    bias = np.full(num_classes, -1e4)
    if clf.coef_.shape[0] == len(clf.classes_):
        coef[clf.classes_], bias[clf.classes_] = clf.coef_, clf.intercept_
    else:  # binary: p(second) = sigmoid(w x + b) = softmax([0, w x + b])
        coef[clf.classes_[1]], bias[clf.classes_] = clf.coef_[0], [0.0, clf.intercept_[0]]
    return coef, bias


def probe_accuracy(f_tr: Any, y_tr: Any, f_te: Any, y_te: Any, seed: int = 0, standardize: bool = False) -> float:
    """Test accuracy of :func:`logistic_probe` trained on ``f_tr`` (``standardize``: z-score with the training
    split's statistics, so no block of concatenated features dominates by scale)."""
    f_tr, f_te = np.asarray(f_tr, dtype=np.float64), np.asarray(f_te, dtype=np.float64)
    if standardize:
        mu, sd = f_tr.mean(0), f_tr.std(0)
        sd = np.where(sd > 0, sd, 1.0)
        f_tr, f_te = (f_tr - mu) / sd, (f_te - mu) / sd
    y_tr, y_te = np.asarray(y_tr), np.asarray(y_te)
    c = int(max(y_tr.max(), y_te.max())) + 1
    coef, bias = logistic_probe(f_tr, y_tr, c, seed)
    return float(np.mean((f_te @ coef.T + bias).argmax(1) == y_te))
