"""Ground truth for the claims: ``bench_rank`` measures every transferability metric against real fine-tuning."""

from ._quality import random_baseline, rank_quality
from ._rank import BenchResult, bench_rank

__all__ = ["BenchResult", "bench_rank", "random_baseline", "rank_quality"]
