"""HTML report of ``distill``: the student against its starting point and its teachers (accuracy, the transfer
evidence, parameters, measured latency), the teachers' weights, and the learning curves."""

from __future__ import annotations

from typing import Any

from ._html import esc, figure_png, fmt, page, table
from ._table import render_html, tables_of


def _curves(history: list[dict[str, Any]]) -> str:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax in (a, b):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
    a.plot(ep, [h.get("train_loss") for h in history], "o-", label="training loss")
    a.plot(ep, [h.get("train_kl") for h in history], "o-", label="T²·KL to the teacher targets")
    a.legend(fontsize=8)
    for key, label in (("train_accuracy", "train (labelled)"), ("val_accuracy", "validation")):
        if history and key in history[0]:
            b.plot(ep, [h.get(key) for h in history], "o-", label=label)
    b.set_ylabel("accuracy")
    b.legend(fontsize=8)
    return figure_png(fig, "learning curves")


def distill_report_html(metrics: dict[str, Any]) -> str:
    m = metrics
    teachers = m["teachers"]
    head = (f"<h1>transferlab distill: {esc(m['method'])} into {esc(m['student'])}</h1>"
            f"<p class='muted'>{esc(m['dataset'])}: {m['n_train']} labelled training examples + {m['n_val']} held "
            f"out" + (f", {m['n_unlabelled']} unlabelled ({esc(m['unlabelled'])})" if m.get("n_unlabelled") else "")
            + f" · {m['epochs']} epochs in {m['train_seconds']:.0f} s · kept epoch {esc(m.get('selected_epoch'))} "
            "(validation accuracy)</p>")
    body = head
    for w in m.get("warnings") or []:
        body += f"<p class='warn'>⚠ {esc(w)}</p>"
    if m.get("test_accuracy") is not None:
        rows = [["student (after)", fmt(m["test_accuracy"]), "", "", fmt(m["student_params"], 0),
                 fmt(m.get("student_ms_per_image"), 3)]]
        if m.get("start_test_accuracy") is not None:
            rows.append(["student (start)", fmt(m["start_test_accuracy"]), "", "", fmt(m["student_params"], 0), ""])
        for k, t in enumerate(teachers):
            rows.append([f"teacher {esc(t)}", fmt(m["teacher_test_accuracy"][k]), fmt(m["agreement"][k]),
                         fmt((m.get("complementary_knowledge") or [None] * len(teachers))[k]),
                         fmt(m["teacher_params"][k], 0), fmt(m["teacher_ms_per_image"][k], 3)])
        body += ("<h2>Test accuracy, parameters and latency</h2>"
                 + table(["model", "test accuracy", "agreement with the student", "complementary knowledge",
                          "parameters", "ms per image"], rows))
        if m.get("transfer_delta") is not None:
            body += (f"<p><b>Transfer delta {100 * m['transfer_delta']:+.1f} points</b> (test accuracy after − "
                     f"before); knowledge gain {100 * m['knowledge_gain']:.1f} % of the test examples flipped to "
                     f"right, knowledge loss {100 * m['knowledge_loss']:.1f} % flipped to wrong.</p>")
        sp = [s for s in m.get("speedup") or [] if s is not None]
        if sp:
            body += f"<p>The student runs {min(sp):.1f}× faster per image than its fastest teacher (measured here).</p>"
        body += ("<p class='muted'>Complementary knowledge: share of test examples a teacher gets right and the "
                 "starting student wrong (what there was to gain). Agreement: share where teacher and student predict "
                 "the same class.</p>")
    if len(teachers) > 1:
        ws = m.get("weight_scores") or {}
        rows = [[esc(t), fmt(m["teacher_weights"][k]), fmt((ws.get("scores") or [None] * len(teachers))[k])]
                for k, t in enumerate(teachers)]
        body += ("<h2>Teacher weights</h2>" + table(["teacher", "weight", f"score ({esc(ws.get('metric', '—'))})"],
                                                    rows))
    if m.get("history"):
        body += "<h2>Training</h2>" + _curves(m["history"])
    return page(f"transferlab distill — {m['method']}", body)


def distill_bench_html(result: dict[str, Any]) -> str:
    """``bench distill``: the teachers, per target and label share every row against the labels-only student, and
    the checks (the declared tables)."""
    r = result
    o = r.get("options", {})
    body = (f"<h1>transferlab bench distill</h1><p class='muted'>students {esc(', '.join(r['students']))} · teachers "
            f"{esc(', '.join(r['teachers']))} · seeds {esc(r['seeds'])} · {o.get('epochs')} epochs · image size "
            f"{esc(o.get('image_size'))} (teachers {esc(o.get('teacher_image_size'))}) · train sample "
            f"{esc(o.get('limit'))}, test sample {esc(o.get('test_limit'))}</p>")
    return page("transferlab bench distill", body + "".join(render_html(t) for t in tables_of(r)))
