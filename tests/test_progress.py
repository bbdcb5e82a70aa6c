"""Progress when nobody watches a terminal (a pipe, CI, nohup): plain lines on stderr at an interval and at the end of
each bar, with the count, the elapsed time and an ETA; never silent for long work."""

from __future__ import annotations

import io

from rich.console import Console as _REAL_CONSOLE  # the class, not the stand-in a test patches in

from transferlab._progress import PlainLines, progress


def test_plain_lines_at_the_interval_and_at_completion(monkeypatch):
    import transferlab._progress as p

    now = [100.0]
    monkeypatch.setattr(p.time, "monotonic", lambda: now[0])
    out = io.StringIO()
    bar = PlainLines(interval=10.0, stream=out)
    task = bar.add_task("[bold]model A[/]", total=100, note="")
    for _ in range(4):  # 4 steps of 5 s: a line after 10 s and after 20 s, not in between
        now[0] += 5.0
        bar.advance(task, 10)
    bar.update(task, advance=60, note="done soon")
    lines = out.getvalue().splitlines()
    assert lines == ["model A: 20/100 (20%), 0:10 elapsed, ETA 0:40",
                     "model A: 40/100 (40%), 0:20 elapsed, ETA 0:30",
                     "model A: 100/100 (100%), 0:20 elapsed, done soon"]
    bar.advance(task, 0)  # a finished bar does not print again
    assert len(out.getvalue().splitlines()) == 3


def test_progress_outside_a_terminal_is_plain_lines_on_stderr(capsys, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_PROGRESS_SECONDS", "0")
    with progress(True) as bars:
        t = bars.add("work", 3)
        for _ in range(3):
            bars.advance(t)
    cap = capsys.readouterr()
    assert cap.out == ""
    assert cap.err.splitlines()[-1].startswith("work: 3/3 (100%)")


def test_rank_in_a_pipe_reports_progress_on_stderr(tmp_path, capsys):
    from transferlab.cli import main

    assert main(["rank", "builtin:digits", "--zoo", "builtin:pixels", "--metrics", "knn", "--limit", "60",
                 "--out", str(tmp_path / "o")]) == 0
    cap = capsys.readouterr()
    assert "builtin:pixels: 60/60 (100%)" in cap.err and "60/60" not in cap.out


def test_fit_and_predict_in_a_pipe_report_the_steps_after_training(tmp_path, capsys, monkeypatch, tiny_model_ref):
    """The steps after training (test prediction, the report with Grad-CAM) and predict's own pass are not silent."""
    from transferlab.cli import main

    monkeypatch.setenv("TRANSFERLAB_PROGRESS_SECONDS", "3600")  # only the completion lines
    out = tmp_path / "fit"
    assert main(["fit", "builtin:digits", "-m", tiny_model_ref, "--method", "head", "--epochs", "1", "--image-size",
                 "32", "--limit", "80", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    n_test = __import__("json").loads((out / "metrics.json").read_text())["n_test"]
    assert f"test prediction: {n_test}/{n_test} (100%)" in err
    assert "report: 2/2 (100%)" in err and err.index("test prediction:") < err.index("report: 2/2")
    assert main(["predict", str(out), "builtin:digits", "--limit", "50", "--output-file", str(tmp_path / "p.csv")]) == 0
    assert "predicting: 50/50 (100%)" in capsys.readouterr().err
    assert main(["predict", str(out), "builtin:digits", "--limit", "50", "--output-file", str(tmp_path / "q.csv"),
                 "-q"]) == 0
    assert "predicting" not in capsys.readouterr().err


def _frame(monkeypatch, width: int) -> list[str]:
    """The lines a terminal ``width`` columns wide shows for fit's epoch bars: a finished epoch with its validation
    metrics, and the next one under way."""
    import rich.console

    term = _REAL_CONSOLE(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    monkeypatch.setattr(rich.console, "Console", lambda **_: term)
    with progress(True) as bars:
        first = bars.add("epoch 1/2", 10)
        bars.advance(first, 10, note="loss 2.3938 acc 0.141  val loss 2.2769 acc 0.1333")
        bars.advance(bars.add("epoch 2/2", 10), 3, note="loss 2.2481 acc 0.167")
        table = bars._bar.make_tasks_table(bars._bar.tasks)
    shown = _REAL_CONSOLE(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    shown.print(table)
    return shown.file.getvalue().splitlines()


def test_the_bar_on_a_narrow_terminal_keeps_its_count_and_eta(monkeypatch):
    """At 80 columns the epoch bar with its validation metrics squeezed the count to '10…' and the ETA to '0:0…'
    (issue 29): the bar and the note give way first, the note ends in an ellipsis on its one line."""
    import re

    for width in (80, 60):
        first, second = _frame(monkeypatch, width)
        assert re.search(r"epoch 1/2 .* 10/10 \d:\d\d:\d\d ETA \d:\d\d:\d\d loss 2\.3938", first), first
        assert re.search(r"epoch 2/2 .*  3/10 \d:\d\d:\d\d ETA (-:--:--|\d:\d\d:\d\d) loss", second), second
        assert first.endswith("…") and "val loss" not in first and len(first) <= width
    wide = _frame(monkeypatch, 160)[0]
    assert wide.rstrip().endswith("val loss 2.2769 acc 0.1333")  # room enough: the whole note
