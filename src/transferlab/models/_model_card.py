"""``README.md`` of a saved text model or peft adapter: what it is, its base, its classes, how it opens in
transferlab and in plain transformers / peft (with the pooling transferlab applies), how it was trained.

Its Python blocks are the ones the tests run: ``DIR`` (this folder), ``BASE`` (the base model, for adapters) and
``texts`` are the only names they leave to the reader."""

from __future__ import annotations

from typing import Any


def pooling_of(card: dict[str, Any]) -> dict[str, Any]:
    """How the card's text model pools the encoder's output: ``pooling`` (mean or cls) and ``normalize``."""
    arch = card.get("architecture") or {}
    return {"pooling": arch.get("pooling", "mean"), "normalize": bool(arch.get("normalize"))}


def model_card(card: dict[str, Any], *, exported: dict[str, Any] | None = None,
               adapter: dict[str, Any] | None = None) -> str:
    """The card's Markdown; ``exported``: the folder is :func:`~transferlab.models.to_transformers`' (``names``:
    transformers' base attribute, classifier and class; ``base``: the adapter's base as transformers opens it);
    ``adapter``: peft's ``adapter_config.json``."""
    arch = card.get("architecture") or {}
    text = arch.get("library") == "transformers"
    classes = [str(c) for c in card.get("class_names") or []]
    method = card.get("method") or "fit"
    what = "merge" if method == "merge" else f"`{method}` fit"
    lines = [_front_matter(card, text, adapter), f"# {arch.get('name', 'model')}: a transferlab {what}", ""]
    lines += [f"A {'text' if text else 'image'} classifier with {len(classes)} classes "
              f"({', '.join(f'`{c}`' for c in classes[:20])}{', ...' if len(classes) > 20 else ''}), made by "
              f"transferlab {_version(card)} with {what} from the model `{card.get('model') or '?'}`"
              f"{_base_note(adapter)}.", ""]
    if text:
        lines += [f"The encoder is a `{arch.get('name')}` (`{(arch.get('config') or {}).get('model_type')}`); the "
                  f"classifier is a linear layer on {_pooling_words(card)}; texts are cut to "
                  f"{card.get('max_length') or arch.get('max_length') or 128} tokens.", ""]
    if not exported:
        lines += _transferlab_section(card)
    if text and exported and adapter is None:
        lines += _transformers_section(card, exported["names"])
    elif text and exported:
        lines += _peft_text_section(card, exported["names"])
    elif text:
        lines += _export_section(card)
    elif adapter is not None:
        lines += _peft_image_section(card)
    lines += _training_section(card)
    return "\n".join(lines).rstrip() + "\n"


def _front_matter(card: dict[str, Any], text: bool, adapter: dict[str, Any] | None) -> str:
    library = "peft" if adapter is not None else ("transformers" if text else "timm")
    tags = ["transferlab", "text-classification" if text else "image-classification"]
    if adapter is not None:
        tags.append(str(adapter.get("peft_type", "peft")).lower())
    base = (adapter or {}).get("base_model_name_or_path")
    hub = isinstance(base, str) and base.count("/") == 1 and not base.startswith((".", "/")) and ":" not in base
    return "\n".join(["---", f"library_name: {library}", *([f"base_model: {base}"] if hub else []), "tags:",
                      *(f"- {t}" for t in tags), "---", ""])


def _version(card: dict[str, Any]) -> str:
    return str(card.get("transferlab_version") or "")


def _base_note(adapter: dict[str, Any] | None) -> str:
    if adapter is None:
        return ""
    return (f"; this folder holds a peft {adapter.get('peft_type', '')} adapter over that base "
            f"(`adapter_config.json`'s `base_model_name_or_path`: `{adapter.get('base_model_name_or_path')}`, "
            "a relative path is relative to this folder)")


def _pooling_words(card: dict[str, Any]) -> str:
    p = pooling_of(card)
    words = "the mean of the encoder's last hidden states over the tokens, padding excluded" \
        if p["pooling"] == "mean" else "the encoder's last hidden state of the first token ([CLS])"
    return words + (", L2-normalised" if p["normalize"] else "")


def _pool_code(card: dict[str, Any]) -> list[str]:
    p = pooling_of(card)
    if p["pooling"] == "mean":
        code = ['    m = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)',
                "    pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)  # the mean over the tokens"]
    else:
        code = ["    pooled = hidden[:, 0]  # the first token"]
    if p["normalize"]:
        code.append("    pooled = torch.nn.functional.normalize(pooled, dim=-1)")
    return code


def _transferlab_section(card: dict[str, Any]) -> list[str]:
    return ["## In transferlab", "", "```python", "from transferlab.models import Predictor", "",
            "clf = Predictor(DIR)  # DIR: this folder", "labels = clf.predict(texts)" if
            (card.get("architecture") or {}).get("library") == "transformers" else "labels = clf.predict(images)",
            "```", "", "or `transferlab predict DIR DATA` on the command line.", ""]


def _export_section(card: dict[str, Any]) -> list[str]:
    if card.get("structure") or card.get("weights") == "trained":
        return ["It opens in transferlab only: its method adds modules transformers' classes lack.", ""]
    return ["## In transformers" + (" and peft" if card.get("weights") == "peft" else ""), "",
            "Write it as a Hugging Face folder (`config.json` with `id2label`, the tokenizer, the weights or the "
            "adapter under transformers' names, a card showing how to pool):", "", "```python",
            "import transferlab", "", "transferlab.models.to_transformers(DIR, OUT)", "```", "",
            "`OUT/README.md` then shows how `AutoModelForSequenceClassification`"
            + (" and `PeftModel`" if card.get("weights") == "peft" else "") + " open it with this model's predictions.",
            ""]


def _forward_code(card: dict[str, Any], model: str, names: Any) -> list[str]:
    arch = card.get("architecture") or {}
    enc, head = names[0], names[1]
    n = card.get("max_length") or arch.get("max_length") or 128
    return [f'enc = tok(texts, padding=True, truncation=True, max_length={n}, return_tensors="pt")',
            "with torch.no_grad():",
            f'    hidden = {model}.{enc}(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])'
            ".last_hidden_state", *_pool_code(card), f"    logits = {model}.{head}(pooled)",
            f"labels = [{model}.config.id2label[i] for i in logits.argmax(-1).tolist()]"]


def _transformers_section(card: dict[str, Any], names: Any) -> list[str]:
    enc = names[0]
    heads = card.get("heads") or {}
    first = f" (with the head of its first task, `{next(iter(heads))}`; the others are in `heads/`)" if heads else ""
    return ["## In transformers", "",
            f"`config.json`, the tokenizer files and `model.safetensors` make this folder a `{names[2]}`{first}:",
            "", "```python", "import torch", "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
            "", "tok = AutoTokenizer.from_pretrained(DIR)",
            "model = AutoModelForSequenceClassification.from_pretrained(DIR).eval()",
            *_forward_code(card, "model", names), "```", "",
            f"Pool as above: `model(**enc).logits` is **not** this model's prediction. transformers' class feeds its "
            f"own pooler (`{enc}.pooler`, a layer this model does not have: transformers reports it as newly "
            "initialised) to the classifier, and no setting of the class pools the way this model was trained: "
            f"{_pooling_words(card)}. `model.{enc}` with `model.classifier` are all the weights; "
            "`config.json`'s `transferlab` entry records the pooling.", ""]


def _peft_text_section(card: dict[str, Any], names: Any) -> list[str]:
    n = card.get("num_classes")
    return ["## In transformers and peft", "",
            "The adapter loads with peft over the sequence-classification model transformers builds from the base "
            f"(its classifier is the adapter's trained `modules_to_save` copy: {n} classes):", "",
            "```python", "import torch", "from peft import PeftModel",
            "from transformers import AutoModelForSequenceClassification, AutoTokenizer", "",
            "tok = AutoTokenizer.from_pretrained(DIR)",
            f"id2label = dict(enumerate({list(card.get('class_names') or [])!r}))",
            f"base = AutoModelForSequenceClassification.from_pretrained(BASE, num_labels={n}, id2label=id2label)",
            "net = PeftModel.from_pretrained(base, DIR).eval().base_model.model  # the adapters are in its layers",
            *_forward_code(card, "net", names), "```", "",
            "`BASE` is the base model (`adapter_config.json`'s `base_model_name_or_path`; a relative path is relative "
            "to this folder). Pool as above: "
            "`net(**enc).logits` feeds transformers' own pooler, which this model never trained "
            f"(it classifies {_pooling_words(card)}).", ""]


def _peft_image_section(card: dict[str, Any]) -> list[str]:
    return ["## In peft", "", "```python", "import transferlab", "from peft import PeftModel", "",
            f"base = transferlab.models.pretrained(BASE, {card.get('num_classes')})  # BASE: transferlab.json's model",
            "net = PeftModel.from_pretrained(base, DIR).eval()", "```", ""]


def _training_section(card: dict[str, Any]) -> list[str]:
    train = card.get("train") or {}
    opts = card.get("options") or {}
    rows = [f"- {k}: `{v}`" for k, v in train.items() if v is not None]
    rows += [f"- option {k}: `{v}`" for k, v in opts.items()]
    merge = card.get("merge") or {}
    if merge:
        rows.append(f"- merged with `{merge.get('method', '?')}`; tasks: "
                    + ", ".join(f"`{t}`" for t in (card.get("heads") or {})))
    return ["## Training and metrics", "", *rows, *([""] if rows else []),
            "`metrics.json` beside this card holds the test and validation accuracy and the training history "
            "(`merge.json` for a merge); `transferlab.json` is transferlab's own card.", ""]
