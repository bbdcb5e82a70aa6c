"""Self-contained HTML reports (plots embedded as PNG data URIs; no external assets), and the one result-table
declaration (:class:`Table`) with its HTML, Markdown and console renderers."""

from ._auto import auto_report_html
from ._continual import continual_bench_html, continual_report_html
from ._distill import distill_bench_html, distill_report_html
from ._domain import domain_bench_html, domain_report_html
from ._fit import fit_report_html
from ._merge import merge_bench_html, merge_report_html
from ._prune import prune_bench_html, prune_report_html
from ._rank import rank_report_html
from ._rank_adaptive import rank_adaptive_bench_html
from ._rank_bench import bench_report_html
from ._scaling import scaling_bench_html
from ._table import (
    FORMATS,
    Column,
    Table,
    fmt_value,
    interval,
    pm,
    registry_table,
    render_console,
    render_html,
    render_markdown,
    render_markdown_all,
    tables_of,
)

__all__ = ["FORMATS", "Column", "Table", "fmt_value", "interval", "pm", "registry_table", "render_console",
           "render_html", "render_markdown", "render_markdown_all", "tables_of",
           "auto_report_html", "bench_report_html", "continual_bench_html", "continual_report_html", "distill_bench_html", "distill_report_html", "domain_bench_html", "domain_report_html", "fit_report_html", "merge_bench_html", "merge_report_html", "prune_bench_html", "prune_report_html", "rank_adaptive_bench_html", "rank_report_html", "scaling_bench_html"]
