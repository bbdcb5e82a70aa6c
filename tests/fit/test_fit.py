"""fit(): methods on a tiny timm model, outputs, load, bad input; one real backbone."""

import json

import numpy as np
import pytest
import torch

from transferlab.data import load_dataset
from transferlab.errors import TransferlabError
from transferlab.fit import fit, list_methods
from transferlab.models import load


@pytest.fixture(scope="module")
def digits():
    tr = load_dataset("builtin:digits").stratified_sample(150)
    te = load_dataset("builtin:digits", "test").stratified_sample(60)
    return tr, te


def test_methods_are_registered():
    assert {"linear_probe", "head", "bitfit", "partial", "finetune"} <= set(list_methods())


def test_bitfit_keeps_pretrained_batch_norm_statistics(digits, tiny_model_ref):
    """BitFit trains the normalisation shifts; the running statistics stay the pretrained ones (the default,
    freeze_norm_stats=True: 0.850 vs 0.770 on Fashion-MNIST, docs/benchmarks.md); off, they adapt to the target."""
    from transferlab.zoo import resolve_model

    tr, te = digits
    pre = {n: b.clone() for n, b in resolve_model(tiny_model_ref).model.named_buffers() if "running_mean" in n}
    for freeze in (True, False):
        net = fit(tr, tiny_model_ref, "bitfit", test=te, epochs=1, image_size=32, freeze_norm_stats=freeze).model
        same = all(torch.equal(b, pre[n]) for n, b in net.named_buffers() if n in pre)
        assert same == freeze


@pytest.mark.parametrize("method, frozen_backbone", [("head", True), ("bitfit", False), ("partial", False),
                                                     ("finetune", False)])
def test_methods_train_what_they_say(method, frozen_backbone, digits, tiny_model_ref):
    tr, te = digits
    r = fit(tr, tiny_model_ref, method, test=te, epochs=1, image_size=32, batch_size=32)
    m, net = r.metrics, r.model
    head = {id(p) for p in net.get_classifier().parameters()}
    trained = {n for n, p in net.named_parameters() if p.requires_grad}
    assert m["trainable_params"] == sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert m["trainable_params"] < m["total_params"] or method == "finetune"
    assert all(id(p) in head for p in net.parameters() if p.requires_grad) == frozen_backbone
    if method == "bitfit":
        assert all(n.endswith("bias") or n.startswith("classifier") for n in trained)
    if method == "finetune":
        assert m["trainable_params"] == m["total_params"]
    assert 0.0 <= m["test_accuracy"] <= 1.0 and m["epochs"] == 1


def test_frozen_backbone_keeps_its_batch_norm_statistics(digits, tiny_model_ref):
    from transferlab.zoo import resolve_model

    before = {k: v.clone() for k, v in resolve_model(tiny_model_ref).model.state_dict().items()
              if "running_mean" in k}
    r = fit(digits[0], tiny_model_ref, "head", test=digits[1], epochs=1, image_size=32)
    after = r.model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())


def test_outputs_and_load_round_trip(digits, tiny_model_ref, tmp_path):
    tr, te = digits
    out = tmp_path / "fit"
    r = fit(tr, tiny_model_ref, "partial", test=te, out=out, epochs=1, image_size=32, blocks=1)
    assert sorted(p.name for p in out.iterdir()) == [
        ".transferlab-output.json", "config.json", "metrics.json", "model.safetensors", "report.html",
        "transferlab.json"]  # config.json: timm's
    html = (out / "report.html").read_text()
    for section in ("Learning curves", "Confusion matrix", "Per class", "Grad-CAM: correct and wrong"):
        assert section in html
    assert html.count("data:image/png;base64,") == 3
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("method", "test_accuracy", "val_accuracy", "trainable_params", "total_params", "train_seconds",
                "peak_rss_mb"):
        assert key in metrics
    cfg = json.loads((out / "transferlab.json").read_text())
    assert cfg["architecture"] == {"library": "timm", "name": "test_efficientnet"} and cfg["options"] == {"blocks": 1}
    net = load(out)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net(x), r.model.eval()(x))


def test_output_dir_holding_another_model_is_refused(digits, tiny_model_ref, tmp_path):
    tr, te = digits
    fit(tr, tiny_model_ref, "head", test=te, out=tmp_path / "o", epochs=1, image_size=32)
    with pytest.raises(TransferlabError, match=r"already holds a different model .*--overwrite"):
        fit(tr, tiny_model_ref, "bitfit", test=te, out=tmp_path / "o", epochs=1, image_size=32)
    fit(tr, tiny_model_ref, "bitfit", test=te, out=tmp_path / "o", epochs=1, image_size=32, overwrite=True)
    assert json.loads((tmp_path / "o" / "transferlab.json").read_text())["method"] == "bitfit"


def test_bad_inputs(digits, tiny_model_ref, tmp_path):
    tr, te = digits
    with pytest.raises(TransferlabError, match="unknown fit method 'lora2'"):
        fit(tr, tiny_model_ref, "lora2", test=te)
    with pytest.raises(TransferlabError, match="takes image input but rotten-tomatoes holds text data"):
        fit(load_dataset("builtin:rotten-tomatoes"), tiny_model_ref, "head")
    with pytest.raises(TransferlabError, match="not a transferlab model directory"):
        load(tmp_path)


def test_linear_probe_uses_cached_features_and_matches_its_head(digits, tiny_model_ref):
    tr, te = digits
    r = fit(tr, tiny_model_ref, "linear_probe", test=te, image_size=32)
    assert r.metrics["trainable_params"] == sum(p.numel() for p in r.model.get_classifier().parameters())
    assert r.metrics["test_accuracy"] > 1.0 / 10  # better than chance on 10 balanced classes


@pytest.mark.slow
def test_linear_probe_on_real_efficientnet_beats_chance_by_far():
    tr = load_dataset("builtin:fashion-mnist").stratified_sample(300)
    te = load_dataset("builtin:fashion-mnist", "test").stratified_sample(200)
    r = fit(tr, "builtin:efficientnet_lite0", "linear_probe", test=te, image_size=64)
    assert r.metrics["test_accuracy"] > 0.6
    assert np.isfinite(r.metrics["val_accuracy"])


@pytest.mark.parametrize("method", ["lora", "dora", "ia3"])
def test_peft_methods_save_in_peft_format_and_load_back(method, digits, tiny_model_ref, tmp_path):
    from peft import PeftModel

    from transferlab.zoo import resolve_model

    tr, te = digits
    out = tmp_path / method
    r = fit(tr, tiny_model_ref, method, test=te, out=out, epochs=1, image_size=32)
    assert {"adapter_config.json", "adapter_model.safetensors", "transferlab.json", "metrics.json"} <= {
        p.name for p in out.iterdir()}
    assert r.metrics["trainable_params"] < r.metrics["total_params"] / 2
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = r.model.eval()(x)
        torch.testing.assert_close(load(out)(x), expected)
        # and with peft alone, on the same base weights and head size
        base = resolve_model(tiny_model_ref).model
        base.reset_classifier(10)
        torch.testing.assert_close(PeftModel.from_pretrained(base, str(out)).eval()(x), expected)


def test_unknown_target_modules_list_the_candidates(digits, tiny_model_ref):
    with pytest.raises(TransferlabError, match=r"match no adaptable layer .*candidates: .*conv_pw"):
        fit(digits[0], tiny_model_ref, "lora", test=digits[1], epochs=1, image_size=32, target_modules=["q_proj"])


def test_l2sp_keeps_the_backbone_near_its_pretrained_weights(digits, tiny_model_ref):
    from transferlab.zoo import resolve_model

    tr, te = digits
    w0 = {k: v.clone() for k, v in resolve_model(tiny_model_ref).model.state_dict().items()
          if k.endswith("weight") and not k.startswith("classifier")}

    def drift(net):
        sd = net.state_dict()
        return sum(float(((sd[k] - v) ** 2).sum()) for k, v in w0.items())

    free = fit(tr, tiny_model_ref, "finetune", test=te, epochs=1, image_size=32, lr=3e-3)
    held = fit(tr, tiny_model_ref, "finetune", test=te, epochs=1, image_size=32, lr=3e-3, l2sp=50.0)
    assert drift(held.model) < 0.5 * drift(free.model)


def test_bss_term_is_the_sum_of_the_smallest_squared_singular_values(tiny_timm_weights):
    import timm
    from safetensors.torch import load_file

    from transferlab.fit._methods import finetune

    net = timm.create_model("test_efficientnet", pretrained=False)
    net.load_state_dict(load_file(str(tiny_timm_weights)))
    net.reset_classifier(4)
    net.eval()
    prep = finetune(net, None, bss=0.5, bss_k=2)
    x = torch.randn(6, 3, 32, 32)
    logits = net(x)
    feats = net.forward_head(net.forward_features(x), pre_logits=True)
    s = torch.linalg.svdvals(feats)
    torch.testing.assert_close(prep.regularizer(net, x, logits), 0.5 * (s[-2:] ** 2).sum())


def test_unknown_method_option_is_a_clear_error(digits, tiny_model_ref):
    with pytest.raises(TransferlabError, match="bitfit: no option 'rank'; its options .*head_lr_scale=10.0"):
        fit(digits[0], tiny_model_ref, "bitfit", test=digits[1], epochs=1, image_size=32, rank=3)


def test_init_continues_from_an_earlier_fit(digits, tiny_model_ref, tmp_path):
    tr, te = digits
    first = fit(tr, tiny_model_ref, "lora", test=te, out=tmp_path / "first", epochs=1, image_size=32)
    merged = first.model.merge_and_unload().state_dict()
    # a second task with other classes: the backbone starts from the first fit, the head is new
    few = tr.subset(np.flatnonzero(tr.labels < 4))
    few = type(few)("digits4", "image", few.items, few.labels, few.class_names[:4])
    te4 = te.subset(np.flatnonzero(te.labels < 4))
    te4 = type(te4)("digits4", "image", te4.items, te4.labels, te4.class_names[:4])
    second = fit(few, tiny_model_ref, "head", test=te4, init=tmp_path / "first", epochs=1, image_size=32)
    sd = second.model.state_dict()
    body = [k for k in sd if not k.startswith("classifier")]
    assert all(torch.equal(sd[k], merged[k]) for k in body)  # head-only training left the body as initialised
    assert sd["classifier.weight"].shape[0] == 4


def test_init_from_another_architecture_is_refused(digits, tiny_model_ref, tmp_path):
    tr, te = digits
    fit(tr, tiny_model_ref, "head", test=te, out=tmp_path / "e", epochs=1, image_size=32)
    import timm
    from safetensors.torch import save_file

    r = timm.create_model("test_resnet", pretrained=False)
    save_file({k: v.contiguous() for k, v in r.state_dict().items()}, str(tmp_path / "r.safetensors"))
    with pytest.raises(TransferlabError, match="is a test_efficientnet but the model to fit is a test_resnet"):
        fit(tr, f"timm:test_resnet@{tmp_path / 'r.safetensors'}", "head", test=te, init=tmp_path / "e",
            epochs=1, image_size=32)


def test_overwrite_keeps_the_old_model_until_the_new_one_exists(digits, tiny_model_ref, tmp_path):
    """A failing --overwrite run (here: an option the method does not take) leaves the earlier model as it was."""
    tr, te = digits
    out = tmp_path / "o"
    fit(tr, tiny_model_ref, "head", test=te, out=out, epochs=1, image_size=32)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(TransferlabError, match="bogus"):
        fit(tr, tiny_model_ref, "bitfit", test=te, out=out, epochs=1, image_size=32, overwrite=True, bogus=1)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]  # no scratch checkpoints left beside it


def test_overwrite_never_replaces_a_directory_transferlab_did_not_write(digits, tiny_model_ref, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(TransferlabError, match="transferlab did not write"):
        fit(digits[0], tiny_model_ref, "head", test=digits[1], out=out, epochs=1, image_size=32, overwrite=True)
    assert (out / "notes.txt").read_text() == "keep me"


def test_a_model_that_predicts_one_class_is_flagged_in_metrics_and_report(tiny_model_ref, tmp_path, monkeypatch):
    """Learning rate so small nothing moves and a head biased to class 3: metrics.json and report.html say it."""
    import json

    import numpy as np

    from transferlab.fit import _api

    real = _api.predict_logits

    def one_class(net, data, batch_size, on_batch=None):  # what a collapsed model outputs
        logits = real(net, data, batch_size, on_batch)
        out = np.zeros_like(logits)
        out[:, 3] = 1.0
        return out

    monkeypatch.setattr(_api, "predict_logits", one_class)
    r = fit("builtin:digits", tiny_model_ref, "head", out=tmp_path / "m", epochs=1, image_size=32)
    assert r.metrics["warnings"] and "predicts one class ('3')" in r.metrics["warnings"][0]
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["warnings"] == r.metrics["warnings"]
    assert "predicts one class" in (tmp_path / "m" / "report.html").read_text()


def test_fit_report_names_the_input_size_by_modality():
    from transferlab.report._fit import _input_size

    assert _input_size({"image_size": 128}) == "image size 128"
    assert _input_size({"image_size": None, "max_length": 64}) == "up to 64 tokens"


def test_bench_merge_report_prints_published_numbers_in_full():
    from transferlab._published import merge_published
    from transferlab.bench import MergeBenchResult
    from transferlab.report import merge_bench_html

    r = MergeBenchResult("m", ["t1", "t2"], ["t1", "t2"], {"t1": 0.8, "t2": 0.5}, {"ties": {"t1": 0.4, "t2": 0.5}},
                         {"ties": 1.0})
    html = merge_bench_html(r.to_dict())
    assert f">{merge_published('ties'):.1f}<" in html
    text = __import__("re").sub(r"<img [^>]*>", "", html)  # the plot's base64 may hold any letters
    assert "e+0" not in text


def test_gradcam_works_on_a_frozen_backbone(tiny_model_ref):
    """A head (or linear-probe, BitFit) fit freezes the backbone: the feature map then has no grad_fn unless the
    input carries the gradient. It used to fail with "'NoneType' object has no attribute 'shape'"."""
    import numpy as np

    from transferlab.data import load_dataset
    from transferlab.fit._cam import gradcam_panels
    from transferlab.models import build, resolve
    from transferlab.models._inputs import ImageTensors

    net = build(resolve(tiny_model_ref), 10).net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    ds = load_dataset("builtin:digits", "test").stratified_sample(20)
    y = ds.labels
    panels, note = gradcam_panels(net, ImageTensors(ds, 64, (0.5,) * 3, (0.5,) * 3), y, np.roll(y, 1),
                                  list(ds.class_names), (0.5,) * 3, (0.5,) * 3)
    assert note == "" and len(panels) >= 4 and all(p["cam"].shape == (64, 64) for p in panels)


def test_a_one_class_dataset_is_refused_before_any_work(tmp_path, tiny_model_ref):
    """A one-class fit exited 0 with "test accuracy 1.0000" (issue 29): refused, as rank and auto refuse it."""
    from tests.conftest import write_image_folder

    data = write_image_folder(tmp_path / "one", n_per_class=6, classes=("only",))
    with pytest.raises(TransferlabError, match=r"single class \('only'\): a classifier needs at least two"):
        fit(str(data), tiny_model_ref, "head", out=tmp_path / "o", epochs=1, image_size=32)
    assert not (tmp_path / "o").exists()
