"""Self-contained HTML reports (plots embedded as PNG data URIs; no external assets)."""

from ._fit import fit_report_html
from ._rank import rank_report_html

__all__ = ["fit_report_html", "rank_report_html"]
