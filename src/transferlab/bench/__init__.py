"""Ground truth for the claims: ``bench_rank`` measures every transferability metric against real fine-tuning;
``bench_merge`` every merge method against the individually fine-tuned models; ``bench_domain`` every domain
adaptation method and label-free selector against the (oracle) target accuracy; ``bench_distill`` every
distillation method against the labels-only student; ``bench_continual`` every continual strategy on
the built-in streams; ``bench_rank_adaptive`` the adaptive ranking against the full one; ``bench_prune``
pretraining on pruned sources against the full source; ``bench_scaling`` the downstream scaling law of target
accuracy in the pretraining size (fitted, and checked on a held-back size). Each runs its grid on a backend:
``backend_of("local")`` or ``backend_of("ray", address, cpus_per_run, gpus_per_run)`` (also what
``rank(..., backend=)`` takes)."""

from ._continual import CLASS_SPLIT, TASK_STREAM, ContinualBenchResult, bench_continual
from ._distill import DistillBenchResult, bench_distill
from ._domain import DomainBenchResult, bench_domain
from ._harness import LocalBackend, RayBackend, backend_of
from ._merge import MergeBenchResult, bench_merge
from ._prune import PruneBenchResult, bench_prune
from ._quality import random_baseline, rank_quality
from ._rank import BenchResult, bench_rank
from ._rank_adaptive import AdaptiveBenchResult, bench_rank_adaptive
from ._scaling import ScalingBenchResult, bench_scaling
from ._scaling_law import LawFit, fit_log_law, log_law

__all__ = ["CLASS_SPLIT", "TASK_STREAM", "AdaptiveBenchResult", "BenchResult", "ContinualBenchResult", "DistillBenchResult", "DomainBenchResult", "LocalBackend", "MergeBenchResult", "PruneBenchResult", "LawFit", "RayBackend", "ScalingBenchResult", "backend_of", "bench_continual", "bench_distill", "bench_domain", "bench_merge", "bench_prune", "bench_rank", "bench_rank_adaptive", "bench_scaling",
           "fit_log_law", "log_law", "random_baseline", "rank_quality"]
