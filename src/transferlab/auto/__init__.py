"""``transferlab auto``: check the data, rank the zoo, adapt the best candidates with the method the budget and the
data size allow, evaluate, try an ensemble and distil it, and report, within a time budget; killed runs resume."""

from ._api import AutoResult, auto
from ._check import CHECKS, Finding, check_data
from ._plan import Plan, Stage, fmt_seconds, measured_text, parse_budget

__all__ = ["CHECKS", "AutoResult", "Finding", "Plan", "Stage", "auto", "check_data", "fmt_seconds", "measured_text", "parse_budget"]
