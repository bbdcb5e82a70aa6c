"""The one table declaration and its three renderers (HTML, Markdown, console) on a fixed table."""

from __future__ import annotations

import pytest

from transferlab.report import (
    Column,
    Table,
    fmt_value,
    pm,
    registry_table,
    render_console,
    render_html,
    render_markdown,
)


@pytest.fixture
def table() -> Table:
    cols = [Column("name", "model <name>"), Column("acc", "accuracy", "mean_sd", sd="acc_sd", detail="ci"),
            Column("delta", "Δ (points)", "points"), Column("params", "parameters", "count"),
            Column("mean", "mean", "number", strong=True)]
    rows = [{"name": "kd[<b>a|b</b>]", "acc": 0.81234, "acc_sd": 0.0129, "ci": "[0.70, 0.90]", "delta": 0.0421,
             "params": 1234567, "mean": 0.5},
            {"name": "labels_only", "acc": None, "delta": "", "params": 10, "mean": None}]
    return Table("Scores & <more>", cols, rows, notes=["a note <i>"], verdicts=["Trust kd & co."], name="t")


def test_formats():
    assert pm(0.81234, 0.0129) == "0.812 ± 0.013" and pm(0.5) == "0.500" and pm(None, 0.1) == "n/a"
    assert pm(-0.2, 0.04, signed=True) == "-0.200 ± 0.040" and pm(0.2, None, 2, signed=True) == "+0.20"
    got = {f: fmt_value(0.8123, f) for f in ("number", "signed", "points", "percent", "seconds", "ratio")}
    assert got == {"number": "0.812", "signed": "+0.812", "points": "+81.2", "percent": "81.2 %", "seconds": "0.8",
                   "ratio": "0.81×"}
    assert fmt_value(1234567, "count") == "1,234,567" and fmt_value(None, "count") == "n/a"
    assert fmt_value(0.8123, "number", 1) == "0.8"
    with pytest.raises(ValueError, match="unknown table format 'pct'"):
        Column("x", "x", "pct")


def test_html_escapes_and_keeps_the_report_look(table):
    out = render_html(table)
    assert out.startswith("<h2>Scores &amp; &lt;more&gt;</h2><p><b>Trust kd &amp; co.</b></p><div class='scroll'><table>")
    assert "<th class='l'>model &lt;name&gt;</th><th class=''>accuracy</th>" in out
    assert "<td class='l'>kd[&lt;b&gt;a|b&lt;/b&gt;]</td>" in out and "<b>a" not in out
    assert "<td class=''>0.812 ± 0.013<br><span class='muted'>[0.70, 0.90]</span></td>" in out
    assert "<td class=''>+4.2</td><td class=''>1,234,567</td><td class=''><b>0.500</b></td>" in out
    assert "<td class=''><span class='muted'>n/a</span></td><td class=''></td>" in out  # None, then a blank
    assert out.endswith("<p class='muted'>a note &lt;i&gt;</p>")
    assert "<h2>" not in render_html(table, heading=False)


def test_markdown_has_an_alignment_row_and_escapes_pipes(table):
    lines = render_markdown(table).splitlines()
    assert lines[0] == "**Scores & <more>**" and lines[1] == ""
    assert lines[2] == "| model <name> | accuracy | Δ (points) | parameters | mean |"
    assert lines[3] == "|:---|---:|---:|---:|---:|"
    assert lines[4] == "| kd[<b>a\\|b</b>] | 0.812 ± 0.013 [0.70, 0.90] | +4.2 | 1,234,567 | **0.500** |"
    assert lines[5] == "| labels_only | n/a |  | 10 | n/a |"
    assert lines[6:] == ["", "**Trust kd & co.**", "", "a note <i>"]
    assert not render_markdown(table, title=False).startswith("**Scores")


def test_console_shows_the_values_as_written(table):
    from rich.console import Console

    c = Console(record=True, width=200, color_system=None)
    c.print(render_console(table))
    text = c.export_text()
    for s in ("Scores & <more>", "kd[<b>a|b</b>]", "0.812 ± 0.013 [0.70, 0.90]", "+4.2", "1,234,567", "0.500",
              "n/a", "Trust kd & co.", "a note <i>"):
        assert s in text, s


def test_a_table_travels_as_a_dict(table):
    again = Table.from_dict(table.to_dict())
    assert again == table
    assert render_markdown(again) == render_markdown(table)


def test_registry_table_is_one_look_for_every_list():
    class Reg:
        def list(self):
            return ["b_method", "a_method"]

        def meta(self, n):
            return {"summary": f"does {n}", "paper": "X 2020", "needs_data": n == "a_method"}

    t = registry_table(Reg(), "method", "methods (--method)", (("needs_data", "data"), ("summary", "summary")))
    assert [c.label for c in t.columns] == ["method", "data", "summary"]
    assert t.rows == [{"name": "b_method", "needs_data": "", "summary": "does b_method"},
                      {"name": "a_method", "needs_data": "yes", "summary": "does a_method"}]
    assert "| a_method | yes | does a_method |" in render_markdown(t)


def test_one_number_format_and_figures_legible_on_a_phone():
    """Reports at phone width (issue 29): figures keep their own size in a sideways-scrolling box below 700 px
    (their text stayed 4-6 px when shrunk to 390 px); numbers are never in e-notation above 0.001."""
    from transferlab.report._html import CSS, figure_png, fmt, pyplot

    assert [fmt(x) for x in (62.3, 1394.6, 0.8125, 123456.0, 3.0)] == ["62.3", "1,395", "0.8125", "123,456", "3"]
    assert fmt(62.3, 1) == "62" and "e+" not in fmt(60.0, 1) and fmt(float("nan")).endswith("n/a</span>")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.plot([0, 1], [0, 1])
    html = figure_png(fig, "a line")
    assert html.startswith("<div class='scroll'><img alt='a line' class='fig'")
    assert "@media (max-width:700px)" in CSS and ".scroll img.fig{max-width:none}" in CSS
