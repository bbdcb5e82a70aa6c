"""HTML report of ``transferlab auto``: the data check, the ranking and why this model, the method and why, the plan
against the measured stage times, the candidates, the next steps, then the chosen model's own report (learning
curves, confusion matrix, per-class precision and recall, Grad-CAM)."""

from __future__ import annotations

import re
from typing import Any

from ._html import esc, fmt, page, table


def _secs(s: float | None) -> str:
    if s is None:
        return "<span class='muted'>-</span>"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def _next_steps(r: dict[str, Any]) -> list[str]:
    m, plan = r["metrics"], r["plan"]
    steps = []
    warn = {f["check"] for f in r["findings"] if f["level"] == "warning"}
    if "duplicates" in warn:
        steps.append("Remove the test examples that are also training examples: the test accuracy above overstates "
                     "what the model does on new data.")
    if "tiny_classes" in warn or "imbalance" in warn:
        steps.append("Collect more examples of the small classes (the per-class table below shows their recall).")
    if m.get("chosen") == "probe":
        steps.append("The linear probe of the frozen model was at least as accurate on validation as any fitted model: "
                     "the pretrained features already separate these classes. It is the cheaper model to keep and "
                     "to retrain on new data.")
    elif m.get("method") == "linear_probe":
        steps.append("With a larger --budget, auto fine-tunes instead of probing (partial fine-tuning added 3 points on "
                     "Fashion-MNIST in docs/benchmarks.md).")
    elif m.get("epochs") == m.get("epochs_planned") and not m.get("stopped_early"):
        steps.append("Training ran to its last planned epoch without stopping early: a larger --budget (more epochs) "
                     "may add accuracy.")
    if not any(s["name"] == "fit 2" for s in plan["stages"]):
        steps.append("With a larger --budget, auto also fits the runner-up and tries their ensemble.")
    steps.append("Deploy: <code>transferlab predict OUT NEW_DATA</code>; measure on other labelled data: "
                 "<code>transferlab eval OUT DATA</code>.")
    small = "builtin:minilm_l6" if (r.get("ranking") or {}).get("dataset", {}).get("modality") == "text" or \
        m.get("max_length") else "builtin:small_resnet_shapes"  # a student of the data's own kind
    steps.append(f"Smaller or faster: <code>transferlab distill DATA --teacher OUT --student {small}"
                 "</code> (or any small model of the same kind), then compare with <code>transferlab eval</code>.")
    return steps


def _fitted(m: dict[str, Any], plan: dict[str, Any]) -> list[str]:
    """The candidates a fit stage actually ran for (a stage skipped for time fitted nothing)."""
    fitted = []
    for s in plan["stages"]:
        if s["name"].startswith("fit ") and not s.get("skipped") and s.get("options", {}).get("model"):
            fitted.append(s["options"]["model"])
    return fitted or [c for c in plan["candidates"] if c == m.get("model")]


def _embedded(fit_report: str | None) -> str:
    if not fit_report:
        return "<p class='muted'>(the chosen model's report is missing)</p>"
    m = re.search(r"<body>(.*)</body>", fit_report, re.S)
    body = m.group(1) if m else ""
    body = re.sub(r"<h2>", "<h3>", re.sub(r"</h2>", "</h3>", body))
    return re.sub(r"<h1>(.*?)</h1>", r"<h2>The chosen model: \1</h2>", body, count=1, flags=re.S)


def auto_report_html(r: dict[str, Any], fit_report: str | None = None) -> str:
    m, plan = r["metrics"], r["plan"]
    ranking = r.get("ranking") or {}
    acc = m.get("test_accuracy")
    head = (f"<h1>transferlab auto: {esc(ranking.get('dataset', {}).get('name', ''))}</h1>"
            f"<p class='muted'>budget {_secs(plan['budget_seconds'])} · wall time {_secs(m.get('wall_seconds'))} · "
            f"kept: {esc(m.get('model'))} ({esc(m.get('method'))}, from stage {esc(m.get('chosen'))}) · validation "
            f"accuracy {fmt(m.get('val_accuracy'))} · test accuracy {fmt(acc)}</p>")
    checks = "".join(f"<li><b>{esc(f['level'])}</b> {esc(f['check'])}: {esc(f['message'])}</li>"
                     for f in r["findings"] if f["level"] != "ok") or "<li>nothing wrong found</li>"
    oks = "; ".join(esc(f["message"]) for f in r["findings"] if f["level"] == "ok")
    body = head + f"<h2>Data check</h2><ul>{checks}</ul><p class='muted'>{oks}</p>"
    rows = []
    for x in (ranking.get("models") or [])[:8]:
        meta = x.get("metadata") or {}
        rows.append([esc(x["name"]) + (" <span class='muted'>(baseline)</span>" if meta.get("baseline") else ""),
                     str(x["consensus_rank"]), fmt(x.get("consensus_score"), 3), fmt(meta.get("params"))])
    body += ("<h2>Ranking, and why this model</h2>"
             f"<p>{esc(ranking.get('recommendation', ''))}</p>"
             + table(["model", "rank", "consensus", "parameters"], rows)
             + f"<p class='muted'>Candidates fitted: {esc(', '.join(_fitted(m, plan)) or 'none')} (the top of the "
               "ranking among the models fit can adapt; a candidate whose stage was skipped for time is not listed)"
               "</p>")
    body += f"<h2>Method, and why</h2><p><b>{esc(plan['method'])}</b>: {esc(plan['method_why'])}</p>"
    body += ("<h2>Plan and measured time</h2>" + table(
        ["stage", "estimate", "measured", "what"],
        [[esc(s["name"]), _secs(s["estimate"]), "skipped: " + esc(s["skipped"]) if s.get("skipped") else _secs(s["measured"]),
          esc(s["what"])] for s in plan["stages"]])
        + "".join(f"<p class='muted'>{esc(n)}</p>" for n in plan.get("notes", [])))
    fits = [(k, v) for k, v in (m.get("fits") or {}).items()]
    if fits:
        body += "<h2>Candidates</h2>" + table(
            ["stage", "model", "method", "validation accuracy", "test accuracy", "epochs", "time"],
            [[esc(k), esc(v["model"]), esc(v["method"]), fmt(v.get("val_accuracy")), fmt(v.get("test_accuracy")),
              esc(v.get("epochs")), _secs(v.get("seconds"))] for k, v in fits])
    ens = m.get("ensemble")
    if ens:
        body += (f"<p>Ensemble of the two: validation accuracy {fmt(ens.get('val_accuracy'))} "
                 f"({100 * ens['gain']:+.1f} points over the better model), test accuracy "
                 f"{fmt(ens.get('test_accuracy'))}. The kept model is chosen on validation accuracy, never on the "
                 "test split.</p>")
    body += "<h2>Next steps</h2><ul>" + "".join(f"<li>{s}</li>" for s in _next_steps(r)) + "</ul>"
    body += _embedded(fit_report)
    return page("transferlab auto", body)
