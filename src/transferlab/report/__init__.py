"""Self-contained HTML reports (plots embedded as PNG data URIs; no external assets)."""

from ._rank import rank_report_html

__all__ = ["rank_report_html"]
