"""``transferlab auto``: transformers' per-load bars stay out of auto's output; the distillation starts from a copy of
the better fit."""

from __future__ import annotations

import pytest
from tests.conftest import write_image_folder

from transferlab.auto import _plan as P
from transferlab.auto._ledger import Ledger


def test_transformers_load_bars_are_quiet_in_auto_and_restored_after(tiny_text_model_dir, capfd):
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    from transferlab.auto._ledger import quiet_transformers

    before = (hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity())
    AutoModel.from_pretrained(str(tiny_text_model_dir))
    assert "Loading weights" in capfd.readouterr().err  # what each load prints otherwise
    with quiet_transformers():
        AutoModel.from_pretrained(str(tiny_text_model_dir))
    assert "Loading weights" not in capfd.readouterr().err
    assert (hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()) == before


@pytest.mark.slow
def test_the_distillation_starts_from_a_copy_of_the_better_fit(tmp_path):
    """distill refuses a student that is also a teacher: auto's distill stage (the ensemble of fit 1 and fit 2
    into the better of them) failed whenever the ensemble gained enough to run it."""
    from transferlab.auto._stages import stage_distill
    from transferlab.fit import fit

    data = write_image_folder(tmp_path / "data", n_per_class=12)
    work = tmp_path / "run"
    fits = {}
    for k, ref in ((1, "builtin:small_resnet_shapes"), (2, "builtin:small_convnext_textures")):
        fit(str(data), ref, "partial", epochs=1, out=work / "work" / f"fit-{k}", image_size=32)
        fits[f"fit {k}"] = {"dir": f"work/fit-{k}", "model": ref, "method": "partial"}
    run = Ledger(work, {}, 600.0, lambda *_: None)
    res = stage_distill(run, P.Stage("distill", 10.0, "distil"), str(data), None, fits, "fit 2", 32, 0, False)
    assert res["model"] == "builtin:small_convnext_textures" and res["val_accuracy"] is not None
    assert (work / "work" / "distill" / "transferlab.json").is_file()
    assert run.done("distill")["result"] == res
