"""``transferlab fit``, ``transferlab predict``, ``transferlab eval``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from ._console import alias, console, print_registry


def positive(value: float | None) -> float | None:
    """Callback of float options that must be finite and > 0 (``--lr nan`` is a usage error)."""
    import math

    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"must be a finite number > 0, got {value}")
    return value


def _options(pairs: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for pair in pairs:
        if "=" not in pair:
            raise typer.BadParameter(f"--option takes KEY=VALUE, got {pair!r}")
        k, v = pair.split("=", 1)
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def _load(data: str, split: str, limit: int | None, text_column: str, label_column: str) -> Any:
    """A dataset split with the same column and sampling options as ``rank`` (``--limit``: class-stratified)."""
    from ..data import load_dataset

    ds = load_dataset(data, split, text_column=text_column, label_column=label_column)
    return ds.stratified_sample(limit) if limit else ds


def _list_methods() -> None:
    from ..fit import METHODS

    print_registry(METHODS, "method", "methods (--method)", (("default_lr", "default lr"), "summary", "paper"))


def fit_cmd(
    data: str = typer.Argument(None, help="Dataset: builtin:NAME, an image folder, an image or text CSV/JSONL, NPZ."),
    model: str = typer.Option(None, "--model", "-m", help="Model reference, e.g. builtin:efficientnet_lite0, "
                              "builtin:minilm_l6 (required unless --list)."),
    method: str = typer.Option("lora", "--method", help="Adaptation method (transferlab fit --list)."),
    epochs: int = typer.Option(5, "--epochs", min=1),
    lr: float = typer.Option(None, "--lr", callback=positive, help="Peak learning rate (default: the method's)."),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    image_size: int = typer.Option(None, "--image-size", min=8, help="Input size (default: the model's native; 128 for images <= 64 px)."),
    max_length: int = typer.Option(None, "--max-length", min=8, max=512,
                                   help="Text models: tokens per example (default 128)."),
    budget_minutes: float = typer.Option(None, "--budget-minutes", callback=positive, help="Stop after the epoch that passes this."),
    patience: int = typer.Option(None, "--patience", min=1, help="Early stopping: stop after this many epochs "
                                 "without a better validation accuracy (the best epoch is kept either way)."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", min=0.0, max=0.5, help="Share of each class held out "
                                       "to choose the best epoch (0: train on everything, keep the last epoch)."),
    init: Path = typer.Option(None, "--init", help="Start from an earlier fit of the same architecture."),
    black_box: Path = typer.Option(None, "--black-box", help="A fitted classifier of DATA's classes to adapt with "
                                   "--method blackvip through its predicted probabilities only (it is the fit's --init)."),
    out: Path = typer.Option(None, "--out", "-o", help="Output directory (default: runs/fit-DATASET-METHOD)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a different model in --out."),
    option: list[str] = typer.Option([], "--option", help="Method option KEY=VALUE (e.g. r=16), repeatable."),
    seed: int = typer.Option(0, "--seed"),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Allow pickle weight files (can run code)."),
    limit: int = typer.Option(None, "--limit", min=1, help="Train on a class-stratified sample of this many "
                              "examples (the test split stays whole)."),
    test_limit: int = typer.Option(None, "--test-limit", min=1, help="Test on a class-stratified sample of this many "
                                   "test examples (a quick look)."),
    text_column: str = typer.Option("text", "--text-column", help="Text column of a CSV/JSONL dataset."),
    label_column: str = typer.Option("label", "--label-column", help="Label column of a CSV/JSONL dataset."),
    as_image: bool = typer.Option(False, "--as-image", help="Texts as images for the vision zoo: each text's "
                                  "builtin:minilm_l6 embedding as a grey square (docs/fit.md#texts-as-images)."),
    label_augmentation: str = typer.Option(None, "--label-augmentation", help="SLA (images): train on joint labels "
                                           "(class x 4 rotations) and predict by aggregating them: rotation."),
    sla_head: str = typer.Option("aggregate", "--sla-head", help="With --label-augmentation: aggregate (4 forward "
                                 "passes) or single (a self-distilled single head, one pass)."),
    pair_encoder: str = typer.Option(None, "--pair-encoder", help="Sentence pairs: bi (the default: each text "
                                     "encoded on its own, a head on [u, v, |u-v|, u*v] that starts at their cosine) "
                                     "or cross (the joined pair read as one sequence)."),
    list_: bool = typer.Option(False, "--list", help="List the adaptation methods and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Adapt a pretrained model to DATA; write the model, its card (transferlab.json), metrics.json and a report."""
    from ..fit import fit

    if list_:
        _list_methods()
        return
    from typer._click.exceptions import MissingParameter

    if data is None:
        raise MissingParameter(param_hint="'DATA'", param_type="argument")
    if model is None:
        raise MissingParameter(param_hint="'--model' / '-m'", param_type="option")
    if black_box is not None:  # blackvip's black box: queried only through predict_proba (transferlab.fit._blackvip)
        if method != "blackvip" or init is not None:
            raise typer.BadParameter("goes with --method blackvip and without --init", param_hint="'--black-box'")
        init = black_box
    train = _load(data, "train", limit, text_column, label_column)
    test = _load(data, "test", test_limit, text_column, label_column)
    if as_image:  # texts as images of their embeddings, for the vision zoo (transferlab.models._as_image)
        from ..models import texts_as_images

        train, test = texts_as_images(train), texts_as_images(test) if test is not None else None
    out_dir = out or Path("runs") / f"fit-{train.name}-{method}"
    if label_augmentation:  # SLA: the method on joint labels, aggregated prediction (transferlab.fit._sla)
        from ..fit import fit_label_augmented

        a = fit_label_augmented(train, model, method, augmentation=label_augmentation, head=sla_head, test=test,
                                out=out_dir, overwrite=overwrite, epochs=epochs, lr=lr, batch_size=batch_size, image_size=image_size,
                                seed=seed, progress=not quiet, trust_pickle=trust_pickle, val_fraction=val_fraction,
                                **_options(option))
        single = sla_head == "single"  # the saved model predicts with the single head: its accuracy first
        acc = a.metrics.get("single_head_accuracy" if single else "test_accuracy", float("nan"))
        also = f" (aggregated {a.metrics.get('test_accuracy', float('nan')):.4f})" if single else ""
        console().print(f"{method} + SLA ({label_augmentation}) on {model}: {'single-head' if single else 'aggregated'}"
                        f" test accuracy {acc:.4f}{also}; model: {out_dir.resolve()}", highlight=False, soft_wrap=True)
        return
    r = fit(train, model, method, test=test, out=out_dir, overwrite=overwrite, epochs=epochs, lr=lr, batch_size=batch_size,
            image_size=image_size, max_length=max_length, budget_minutes=budget_minutes, patience=patience, seed=seed,
            progress=not quiet, val_fraction=val_fraction,
            trust_pickle=trust_pickle, init=init, pair_encoder=pair_encoder, **_options(option))
    m = r.metrics
    c = console()
    c.print(f"{method} on {model}: test accuracy {m['test_accuracy']:.4f}, val accuracy "
            f"{(m['val_accuracy'] or float('nan')):.4f}, {m['trainable_params']:,} of {m['total_params']:,} parameters "
            f"trained, {m['train_seconds']:.1f} s", highlight=False)
    if "queries" in m:
        c.print(f"black-box queries: {m['queries_train']:,} training, {m['queries_eval']:,} validation", highlight=False)
    c.print(f"model: {out_dir.resolve()}", highlight=False, soft_wrap=True)


def predict_cmd(
    model_dir: Path = typer.Argument(..., help="A directory written by transferlab fit (or merge, auto...)."),
    data: str = typer.Argument(..., help="Data to predict, with or without labels: a folder of images (class "
                               "sub-folders or none), a CSV/JSONL (a path or text column; a label column "
                               "optional), an NPZ, builtin:NAME."),
    split: str = typer.Option("test", "--split", help="The split of labelled data (data without labels is "
                              "predicted whole)."),
    output_file: Path = typer.Option(Path("predictions.csv"), "--output-file", help="The CSV to write (every "
                                     "--out of the other commands is a directory)."),
    out: Path = typer.Option(None, "--out", "-o", hidden=True, help="Deprecated spelling of --output-file."),
    proba: bool = typer.Option(False, "--proba", help="Add every class's probability (columns proba_CLASS)."),
    id_column: str = typer.Option(None, "--id-column", help="A CSV/JSONL column to identify each row by (default: "
                                  "the image path, or the text's row number)."),
    head: str = typer.Option(None, "--head", help="A merged model's task head (default: the "
                            "first); an SLA model's prediction: aggregate or single (default: the fit's)."),
    limit: int = typer.Option(None, "--limit", min=1, help="A class-stratified sample of this many examples (data "
                              "without labels: the first ones)."),
    text_column: str = typer.Option("text", "--text-column", help="Text column of a CSV/JSONL dataset."),
    label_column: str = typer.Option("label", "--label-column", help="Label column of a CSV/JSONL dataset."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Write predicted labels and probabilities for DATA to a CSV: one row per input (its path or row), the model's
    class name and its probability."""
    from .._io import check_output
    from ..data import Inputs, load_inputs
    from ..models import Predictor

    out = Path(alias("--output-file", "--out", output_file, out))
    check_output(out, kind="file", inputs=[model_dir, data])
    inputs = load_inputs(data, split, text_column=text_column, label_column=label_column, id_column=id_column)
    if limit:
        inputs = inputs.head(limit) if isinstance(inputs, Inputs) else inputs.stratified_sample(limit)
    if isinstance(inputs, Inputs):  # which inputs, in which order: the rows of the CSV
        console().print(f"without labels: {inputs.meta.get('order', f'{len(inputs)} inputs')}", highlight=False,
                        soft_wrap=True, markup=False)
    p = Predictor(model_dir, head=head, progress=not quiet).predictions(inputs)
    p.write_csv(out, proba=proba)
    console().print(f"{len(p)} predictions: {out.resolve()}", highlight=False, soft_wrap=True)


def eval_cmd(
    model_dir: Path = typer.Argument(..., help="A directory written by transferlab fit."),
    data: str = typer.Argument(..., help="Labelled dataset."),
    split: str = typer.Option("test", "--split"),
    as_json: bool = typer.Option(False, "--json"),
    head: str = typer.Option(None, "--head", help="A merged model's task head (default: the "
                            "first); an SLA model's prediction: aggregate or single (default: the fit's)."),
    limit: int = typer.Option(None, "--limit", min=1, help="A class-stratified sample of this many examples."),
    text_column: str = typer.Option("text", "--text-column", help="Text column of a CSV/JSONL dataset."),
    label_column: str = typer.Option("label", "--label-column", help="Label column of a CSV/JSONL dataset."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Accuracy and per-class precision/recall of a fitted model on DATA."""
    from rich.table import Table

    from ..data import Dataset, load_inputs
    from ..models import evaluate as evaluate_model

    ds = load_inputs(data, split, text_column=text_column, label_column=label_column)  # without labels: refused
    r = evaluate_model(model_dir, ds.stratified_sample(limit) if limit and isinstance(ds, Dataset) else ds,
                       split=split, head=head, progress=not quiet)
    if as_json:
        typer.echo(json.dumps(r, indent=2))
        return
    c = console()
    c.print(f"{r['dataset']} ({r['split']}, {r['n']} examples): accuracy {r['accuracy']:.4f}", highlight=False)
    t = Table("class", "precision", "recall", "f1", "support")
    for name, v in r["per_class"].items():
        t.add_row(name, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", str(v["support"]))
    c.print(t)
