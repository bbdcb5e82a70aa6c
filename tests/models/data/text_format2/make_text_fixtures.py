"""Write the text-model fixtures of tests/models/data/text_format2 with the transferlab on PYTHONPATH (run at a commit
before text fits used transformers' module names: encoder./head. in model.safetensors and adapter keys)."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

import transferlab
from transferlab.data import Dataset

TOPICS = {
    "sport": ["match", "goal", "team", "coach", "league", "striker", "season", "referee"],
    "food": ["recipe", "sauce", "bread", "oven", "spicy", "dinner", "garlic", "flavour"],
    "music": ["guitar", "album", "chorus", "band", "melody", "concert", "drums", "lyrics"],
}
FILLER = ["the", "a", "was", "really", "and", "then", "it", "this", "very", "we", "of", "after"]
TEXTS = ["the team won the match after a goal", "a spicy sauce and garlic bread", "the band played the chorus",
         "we really liked it"]


def data(n: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for ci, words in enumerate(TOPICS.values()):
        for _ in range(n):
            k = int(rng.integers(3, 20))
            texts.append(" ".join(words[i] if rng.random() < 0.4 else FILLER[j]
                                  for i, j in zip(rng.integers(0, len(words), k), rng.integers(0, len(FILLER), k), strict=True)))
            labels.append(ci)
    return Dataset(f"topics-{seed}", "text", texts, np.array(labels), tuple(TOPICS), split="train")


def base(d: Path) -> None:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    d.mkdir(parents=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *FILLER, *(w for ws in TOPICS.values() for w in ws)]
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(d / "vocab.txt"), do_lower_case=True).save_pretrained(str(d))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(str(d))


def main(root: Path) -> None:
    from transferlab.fit import fit
    from transferlab.merge import merge_models
    from transferlab.models import load

    torch.set_num_threads(1)
    shutil.rmtree(root, ignore_errors=True)
    base(root / "base")
    ref = "hf:" + str(root / "base")
    fit(data(10, 0), ref, "finetune", out=root / "fit_finetune", epochs=1, lr=1e-2, max_length=24)
    fit(data(10, 1), ref, "lora", out=root / "fit_lora", epochs=1, lr=3e-2, max_length=24, r=2)
    merge_models("average", ref, [root / "fit_finetune", root / "fit_lora"], root / "merge_avg", names=["a", "b"])
    for d in ("fit_finetune", "fit_lora", "merge_avg"):
        for junk in ("report.html", "checkpoints"):
            p = root / d / junk
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    refs = {}
    with torch.inference_mode():
        for name, head in (("fit_finetune", None), ("fit_lora", None), ("merge_avg/a", "a"), ("merge_avg/b", "b")):
            net = load(root / name.split("/")[0], head=head)
            enc = net.transferlab_tokenizer(TEXTS, padding=True, truncation=True, max_length=24, return_tensors="pt")
            refs[name] = net({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}).contiguous()
    from safetensors.torch import save_file

    save_file(refs, str(root / "reference.safetensors"), metadata={"texts": json.dumps(TEXTS),
                                                                    "transferlab_version": transferlab.__version__})


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
