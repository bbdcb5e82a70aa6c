"""PruneResult: the kept source classes, every class's score, and the tables its report and the console render."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: what ``prune`` does not measure, said where a reader looks for it (the report, the console)
NOT_MEASURED = ("prune scores and selects source classes; it trains nothing, so it measures no accuracy before or "
                "after pruning and no model latency: transferlab bench prune pretrains on the full and on the pruned "
                "source, fine-tunes on the target and reports both accuracies and the pretraining time.")


@dataclass
class PruneResult:
    method: str
    kept: list[str]
    scores: dict[str, float]
    manifest: Path | None = None
    #: source, target, surrogate, keep, n_source_classes, n_kept, n_target_scored, seed, kept_share_of_examples,
    #: n_source_examples, n_kept_examples, class_sizes (source training examples per class), seconds (scoring)
    info: dict[str, Any] = field(default_factory=dict)

    def tables(self) -> list[Any]:
        """The declared tables: what was pruned (classes and training examples, before and after) and every source
        class by score, kept or not."""
        from ..report import Column, Table

        i = self.info
        n_src, n_kept = i.get("n_source_classes"), i.get("n_kept")
        ex_src, ex_kept = i.get("n_source_examples"), i.get("n_kept_examples")
        summary = Table("What was pruned", [
            Column("what", "source (train split)"), Column("before", "before", "count"),
            Column("after", "after", "count"), Column("share", "kept", "percent")], [
            {"what": "classes", "before": n_src, "after": n_kept,
             "share": n_kept / n_src if n_src and n_kept is not None else None},
            {"what": "training examples", "before": ex_src, "after": ex_kept,
             "share": i.get("kept_share_of_examples")}],
            verdicts=[f"{self.method}: kept {len(self.kept)} of {n_src} source classes: {', '.join(self.kept)}."],
            notes=[NOT_MEASURED], name="summary")
        sizes = i.get("class_sizes") or {}
        kept = set(self.kept)
        rows = [{"class": c, "score": s, "examples": sizes.get(c), "kept": "kept" if c in kept else "pruned"}
                for c, s in sorted(self.scores.items(), key=lambda cs: -cs[1])]
        whole = all(float(v).is_integer() for v in self.scores.values())  # counts (label_map, feature_map)
        classes = Table("Source classes by score", [
            Column("class", "class"), Column("score", "score", "number", digits=0 if whole else 3),
            Column("examples", "examples", "count"), Column("kept", "status")], rows,
            notes=[f"Score ({self.method}): higher is kept first; the best {n_kept} of {n_src} are kept "
                   f"(--keep {i.get('keep')}), ties in the source's order. {i.get('n_target_scored')} target "
                   "examples were scored."], name="classes")
        return [summary, classes]

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "kept": self.kept, "scores": self.scores,
                "manifest": None if self.manifest is None else str(self.manifest), **self.info,
                "tables": [t.to_dict() for t in self.tables()]}
