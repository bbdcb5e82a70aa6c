"""``README.md`` of a saved text model or peft adapter: what it is, its base, its classes, how it opens in
transferlab and in plain transformers / peft (with the pooling transferlab applies), how it was trained.

Its Python blocks are the ones the tests run: ``DIR`` (this folder), ``BASE`` (the base model, for adapters) and
``texts`` are the only names they leave to the reader."""

from __future__ import annotations

from typing import Any

#: a text model folder's custom-code file (``_hf_modeling``) and its class, which ``config.json``'s ``auto_map`` names
MODELING_FILE = "modeling_transferlab.py"
MODEL_CLASS = "TransferlabForSequenceClassification"


def pooling_of(card: dict[str, Any]) -> dict[str, Any]:
    """How the card's text model pools the encoder's output: ``pooling`` (mean or cls) and ``normalize``."""
    arch = card.get("architecture") or {}
    return {"pooling": arch.get("pooling", "mean"), "normalize": bool(arch.get("normalize"))}


def model_card(card: dict[str, Any], *, form: str | None = None, exported: bool = False,
               adapter: dict[str, Any] | None = None) -> str:
    """The card's Markdown. ``form``: how the folder opens in transformers (``_hf_text.hf_form``: ``"model"``,
    ``"adapter"`` or None); ``exported``: the folder is :func:`~transferlab.models.to_transformers`' (it has no
    transferlab card); ``adapter``: peft's ``adapter_config.json``."""
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
    if text and form == "model":
        lines += _transformers_section(card)
    elif text and form == "adapter":
        lines += _peft_text_section(card)
    elif text:
        lines += _export_section(card)
    elif adapter is not None:
        lines += _peft_image_section(card)
    lines += _training_section(card, exported)
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


def _transferlab_section(card: dict[str, Any]) -> list[str]:
    return ["## In transferlab", "", "```python", "from transferlab.models import Predictor", "",
            "clf = Predictor(DIR)  # DIR: this folder", "labels = clf.predict(texts)" if
            (card.get("architecture") or {}).get("library") == "transformers" else "labels = clf.predict(images)",
            "```", "", "or `transferlab predict DIR DATA` on the command line.", ""]


def _export_section(card: dict[str, Any]) -> list[str]:
    if card.get("structure") or card.get("weights") == "trained":
        return ["It opens in transferlab only: its method adds modules transformers' classes lack.", ""]
    tasks = (card.get("merge") or {}).get("task_weights") or {}
    head = f", head={next(iter(tasks))!r}" if tasks else ""
    why = ("this folder holds each task's tensors over a shared network, so each task is written on its own"
           if tasks else "this folder was written by a transferlab whose module names were not transformers' yet")
    return ["## In transformers" + (" and peft" if card.get("weights") == "peft" else ""), "",
            f"Write it as a Hugging Face folder ({why}):", "", "```python", "import transferlab", "",
            f"transferlab.models.to_transformers(DIR, OUT{head})", "```", "",
            "`OUT/README.md` then shows how `AutoModelForSequenceClassification`"
            + (" and `PeftModel`" if card.get("weights") == "peft" else "") + " open it with this model's predictions.",
            ""]


def _code_logits(card: dict[str, Any], model: str, labels: str) -> list[str]:
    n = card.get("max_length") or (card.get("architecture") or {}).get("max_length") or 128
    return [f'enc = tok(texts, padding=True, truncation=True, max_length={n}, return_tensors="pt")',
            "with torch.no_grad():", f"    logits = {model}(**enc).logits",
            f"labels = [{labels}.id2label[i] for i in logits.argmax(-1).tolist()]"]


def _why_custom_code(card: dict[str, Any]) -> str:
    enc = ((card.get("architecture") or {}).get("modules") or {}).get("encoder", "encoder")
    return (f"`trust_remote_code=True` runs this folder's `modeling_transferlab.py` (torch and transformers only): "
            f"its class pools as this model was trained, {_pooling_words(card)}, which no class of transformers "
            f"does. Without it transformers builds its own class from the same weights, which classifies the output "
            f"of its own pooler or head layers, absent here and newly initialised (its load report lists them, e.g. "
            f"`{enc}.pooler.dense` for BERT): those predictions are not this model's. `AutoModel.from_pretrained(DIR)` "
            "opens the fine-tuned encoder without custom code; `config.json`'s `transferlab` entry records the pooling.")


def _transformers_section(card: dict[str, Any]) -> list[str]:
    heads = card.get("heads") or {}
    chosen = card.get("selected_head")
    first = ""
    if chosen:
        first = f" with the head of the task `{chosen}`"
    elif heads:
        first = (f" with the head of its first task, `{next(iter(heads))}` (the others are in `heads/`; "
                 "`transferlab.models.to_transformers(DIR, OUT, head=TASK)` writes a folder with another)")
    return ["## In transformers", "",
            f"`config.json`, `modeling_transferlab.py`, the tokenizer files and `model.safetensors` make this folder "
            f"a sequence-classification model{first}:", "",
            "```python", "import torch", "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
            "", "tok = AutoTokenizer.from_pretrained(DIR)",
            "model = AutoModelForSequenceClassification.from_pretrained(DIR, trust_remote_code=True).eval()",
            *_code_logits(card, "model", "model.config"), "```", "", _why_custom_code(card), ""]


def _peft_text_section(card: dict[str, Any]) -> list[str]:
    n = card.get("num_classes")
    return ["## In transformers and peft", "",
            "The adapter's tensors are under transformers' names; it loads with peft over this folder's model class "
            "built on the base (its classifier is the adapter's trained `modules_to_save` copy):", "",
            "```python", "import torch", "from peft import PeftModel",
            "from transformers import AutoConfig, AutoTokenizer",
            "from transformers.dynamic_module_utils import get_class_from_dynamic_module", "",
            "tok = AutoTokenizer.from_pretrained(DIR)",
            "config = AutoConfig.from_pretrained(DIR)  # the base's config, this model's classes and pooling",
            f'cls = get_class_from_dynamic_module("{MODELING_FILE[:-3]}.{MODEL_CLASS}", DIR)',
            "model = PeftModel.from_pretrained(cls.from_pretrained(BASE, config=config), DIR).eval()",
            *_code_logits(card, "model", "config"), "```", "",
            "`BASE` is the base model (`adapter_config.json`'s `base_model_name_or_path`; a relative path is relative "
            "to this folder); transformers reports the base's pooler as unused and the classifier as new (the "
            "adapter replaces it). The class comes from this folder's `modeling_transferlab.py` (torch and "
            f"transformers only): it pools as this model was trained, {_pooling_words(card)}, which no class of "
            "transformers does. Where transformers' own class for this model type has one linear `classifier` "
            "(BERT's), plain peft over it loads every adapter tensor by its name as well "
            f"(`PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(BASE, num_labels={n}), "
            "DIR)`), but that class classifies its pooler's output, which this model never trained.", ""]


def _peft_image_section(card: dict[str, Any]) -> list[str]:
    return ["## In peft", "", "```python", "import transferlab", "from peft import PeftModel", "",
            f"base = transferlab.models.pretrained(BASE, {card.get('num_classes')})  # BASE: transferlab.json's model",
            "net = PeftModel.from_pretrained(base, DIR).eval()", "```", ""]


def _training_section(card: dict[str, Any], exported: bool = False) -> list[str]:
    train = card.get("train") or {}
    opts = card.get("options") or {}
    rows = [f"- {k}: `{v}`" for k, v in train.items() if v is not None]
    rows += [f"- option {k}: `{v}`" for k, v in opts.items()]
    merge = card.get("merge") or {}
    if merge:
        rows.append(f"- merged with `{merge.get('method', '?')}`; tasks: "
                    + ", ".join(f"`{t}`" for t in (card.get("heads") or {})))
    where = ("the transferlab folder this was written from holds" if exported else "`metrics.json` beside this card holds")
    return ["## Training and metrics", "", *rows, *([""] if rows else []),
            f"{where} the test and validation accuracy and the training history (`merge.json` for a merge)"
            + ("" if exported else "; `transferlab.json` is transferlab's own card") + ".", ""]
