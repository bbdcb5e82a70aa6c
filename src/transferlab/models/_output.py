"""The output of one training run — fit, domain, distill, continual, pretrain: the one owner of its lifecycle.

    with RunOutput(out, model=ref, method="domain:dann", what="adaptation", overwrite=False) as output:
        train(..., checkpoint_dir=output.checkpoints)                 # resumable; scratch with --overwrite
        card = output.card(modality="image", architecture=..., ...)   # a validated ModelCard
        output.write(net, card, metrics, files={"report.html": html})

Entering claims ``out`` before any work (:func:`~transferlab.models.claim_output`: a folder holding anything
transferlab did not write is refused); :attr:`RunOutput.checkpoints` is where the loop checkpoints (``out/checkpoints``,
resumed by a rerun, or a scratch sibling for an ``--overwrite`` run); :meth:`RunOutput.write` builds the model, its card,
``metrics.json`` (local paths relative to ``out``) and any extra files in a temporary sibling swapped in only when
complete; leaving removes the scratch checkpoints, whatever happened. Without ``out`` every call does nothing, so a
capability never branches on whether it writes.

In a distributed run (``torchrun``, or a capability's ``devices=N``: :mod:`transferlab.train._distributed`) rank 0
alone claims, writes and cleans up; the other processes touch nothing (the loop reads and writes checkpoints on rank
0 only) and wait in :meth:`RunOutput.write` until rank 0 has written."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .._io import atomic_dir, check_output, write_json_atomic, write_text_atomic
from .._version import __version__
from ..errors import TransferlabError
from ._card import FORMAT, FolderCard, ModelCard
from ._outdir import claim_output
from ._paths import portable, recorded_reference

CardT = TypeVar("CardT", ModelCard, FolderCard)
#: an extra file of an output: its text, its bytes, or a function that writes it at the path it is given
FileContent = str | bytes | Callable[[Path], None]


@dataclass
class RunResult:
    """What a training run returns: the trained network (or the run's modules), ``metrics`` (as in
    ``metrics.json``), the output directory (None: nothing written) and the per-epoch history."""

    model: Any
    metrics: dict[str, Any]
    out_dir: Path | None = None
    history: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "out_dir": None if self.out_dir is None else str(self.out_dir),
                "history": self.history}


def _main_process() -> bool:
    """Rank 0 of a distributed run, or the only process: torch's launcher contract, read from the environment as
    :func:`transferlab.train._distributed.world` reads it (``models`` is below ``train``)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1 or int(os.environ.get("RANK", "0")) == 0


def _barrier() -> None:
    """Wait for every process of a distributed run whose process group has started (else nothing)."""
    import sys

    dist = getattr(sys.modules.get("torch"), "distributed", None)
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.barrier()


class RunOutput:
    """The output directory ``out`` (None: the run writes nothing) of a run of ``model`` made by ``method``; ``what``
    names the run in messages; ``inputs``: the run's own inputs, which ``out`` must not be or hold;
    ``resumable``: False for a run that does not checkpoint (its output is written once, at the end)."""

    def __init__(self, out: str | Path | None, *, model: str, method: str, what: str = "run", overwrite: bool = False,
                 inputs: Iterable[Any] = (), resumable: bool = True, need_bytes: int = 0) -> None:
        self.out = Path(out) if out is not None else None
        self.model, self.method, self.what = model, method, what
        self.overwrite, self.resumable, self.need_bytes = overwrite, resumable, need_bytes
        self.inputs = [x for x in inputs if isinstance(x, (str, os.PathLike))]
        self._scratch: Path | None = None
        self.main = _main_process()

    def __enter__(self) -> RunOutput:
        if self.out is not None and self.main:
            check_output(self.out, inputs=self.inputs, need_bytes=self.need_bytes)
            self._scratch = claim_output(self.out, {"model": self.model, "method": self.method}, self.overwrite,
                                         self.what)
            if not self.resumable and not self.overwrite and self.out.is_dir() and any(self.out.iterdir()):
                # a run that does not checkpoint resumes nothing: what is there (another run's checkpoints) stays
                raise TransferlabError(f"{self.out} already holds another transferlab run's files; choose another "
                                       "--out or pass --overwrite")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    @property
    def checkpoints(self) -> Path | None:
        """Where the loop checkpoints: a scratch sibling (``--overwrite``: the old output stays until the new one is
        complete) or ``out/checkpoints`` (resumed by a rerun); None without ``out`` or for a run that does not
        checkpoint."""
        if self.out is None or not self.resumable:
            return None
        return self._scratch or self.out / "checkpoints"

    def card(self, kind: type[CardT] = ModelCard, **fields: Any) -> CardT:  # type: ignore[assignment]
        """The validated card (``kind``: :class:`ModelCard`, or :class:`FolderCard` for a merge of plain Hugging
        Face folders): ``model`` (recorded relative to ``out``; a ``model`` in ``fields``, already recorded by the
        caller, replaces it), ``method``, the
        transferlab version and the card format, with ``fields`` (``options`` made portable: local paths relative to
        ``out``)."""
        assert self.out is not None, "card() needs an output directory"
        body = {"model": recorded_reference(self.model, self.out), "method": self.method,
                "transferlab_version": __version__, "format": FORMAT, **fields}
        if "options" in fields:
            body["options"] = portable(fields["options"], self.out)
        return kind.model_validate(body)

    @contextmanager
    def staged(self) -> Iterator[Path]:
        """A temporary sibling of ``out`` for an output written piece by piece (a merge streams its network tensor by
        tensor), swapped in only when the block completes; removed on failure. Rank 0 of a distributed run only."""
        assert self.out is not None and self.main, "staged() needs an output directory, on rank 0"
        with atomic_dir(self.out) as stage:
            yield stage

    def write(self, net: Any, card: ModelCard, metrics: Mapping[str, Any], *,
              files: Mapping[str, FileContent] | None = None, tokenizer: Any = None, base: str | None = None, trust_pickle: bool = False,
              portable_metrics: bool = True) -> None:
        """The model (:func:`~transferlab.models.save_model`), ``metrics.json`` and ``files``, swapped in together
        (by rank 0 of a distributed run; the others wait here until it has)."""
        if self.out is None:
            return
        if not self.main:
            _barrier()
            return
        self._write(net, card, metrics, files, tokenizer, base, trust_pickle, portable_metrics)
        _barrier()

    def _write(self, net: Any, card: ModelCard, metrics: Mapping[str, Any], files: Mapping[str, FileContent] | None,
               tokenizer: Any, base: str | None, trust_pickle: bool, portable_metrics: bool) -> None:
        assert self.out is not None
        from ._saved import save_model

        # the weights and a margin for the rest (card, metrics, report): refused in one line, never half-written
        weights = sum(t.numel() * t.element_size() for t in [*net.parameters(), *net.buffers()])
        check_output(self.out, need_bytes=int(weights * 1.1) + 2**20)
        with atomic_dir(self.out) as stage:
            save_model(stage, net, card, tokenizer, base=base, trust_pickle=trust_pickle)
            write_json_atomic(stage / "metrics.json", portable(dict(metrics), self.out) if portable_metrics
                              else dict(metrics))
            for name, content in (files or {}).items():
                path = stage / name
                path.parent.mkdir(parents=True, exist_ok=True)
                if callable(content):
                    content(path)
                elif isinstance(content, bytes):
                    path.write_bytes(content)
                else:
                    write_text_atomic(path, content)
