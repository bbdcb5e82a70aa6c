"""ScaLearn over frozen source adapters."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from transferlab.data import load_dataset
from transferlab.errors import TransferlabError
from transferlab.fit import fit
from transferlab.models import load


@pytest.fixture(scope="module")
def sources(tmp_path_factory, tiny_timm_weights):
    ref = f"timm:test_efficientnet@{tiny_timm_weights}"
    tr = load_dataset("builtin:digits").stratified_sample(150)
    te = load_dataset("builtin:digits", "test").stratified_sample(40)
    root = tmp_path_factory.mktemp("src")
    dirs = []
    for i, keep in enumerate([tr.labels < 5, tr.labels >= 5]):  # two source tasks: digits 0-4 and 5-9
        sub = tr.subset(np.flatnonzero(keep))
        fit(sub, ref, "adapter", test=te, out=root / f"s{i}", epochs=1, image_size=32, r=4, seed=i)
        dirs.append(str(root / f"s{i}"))
    return ref, tr, te, dirs


@pytest.mark.parametrize("uniform", [False, True])
def test_only_the_scalings_and_head_train_and_sources_stay_frozen(sources, uniform, tmp_path):
    ref, tr, te, dirs = sources
    before = [dict(load(d).state_dict()) for d in dirs]
    r = fit(tr, ref, "scalearn", test=te, out=tmp_path / "t", epochs=1, image_size=32, sources=dirs, uniform=uniform)
    net = r.model
    omegas = [m.omega for m in net.modules() if type(m).__name__ == "ScaledSources"]
    head = sum(p.numel() for p in net.get_classifier().parameters())
    assert omegas and r.metrics["trainable_params"] == sum(o.numel() for o in omegas) + head
    assert all(o.ndim == (1 if uniform else 2) for o in omegas)
    assert any(not torch.allclose(o, torch.full_like(o, 0.5)) for o in omegas)  # they learned something
    # the source adapters inside the target are exactly the sources' adapters
    wrapped = next(m for m in net.modules() if type(m).__name__ == "ScaledSources")
    name = next(n for n, m in net.named_modules() if m is wrapped)
    for k, b in enumerate(before):
        torch.testing.assert_close(wrapped.sources[k].down.weight, b[f"{name}.adapter.down.weight"])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(load(tmp_path / "t")(x), net.eval()(x))
    cfg = json.loads((tmp_path / "t" / "transferlab.json").read_text())
    assert cfg["options"]["sources"] == [f"../../{Path(d).parent.name}/{Path(d).name}" for d in dirs]  # relative
    # self-contained: the saved model loads with its sources gone
    cfg["options"]["sources"] = [str(tmp_path / "gone-a"), str(tmp_path / "gone-b")]
    (tmp_path / "t" / "transferlab.json").write_text(json.dumps(cfg))
    with torch.no_grad():
        torch.testing.assert_close(load(tmp_path / "t")(x), net(x))


def test_scalearn_needs_two_adapter_sources(sources, tmp_path):
    ref, tr, te, dirs = sources
    with pytest.raises(TransferlabError, match="at least 2 source adapters"):
        fit(tr, ref, "scalearn", test=te, epochs=1, image_size=32, sources=dirs[:1])
    fit(tr, ref, "head", test=te, out=tmp_path / "h", epochs=1, image_size=32)
    with pytest.raises(TransferlabError, match="sources must be 'adapter' fits"):
        fit(tr, ref, "scalearn", test=te, epochs=1, image_size=32, sources=[dirs[0], str(tmp_path / "h")])
