"""LoRA adapters merge through their products ``scaling * B @ A``, never A and B apart (peft#3004, PR #3013: the mean
of the factors is not the mean of the products): one LoRA at weight 1 is lossless (peft's own merge_and_unload), and
two LoRAs merge exactly as the dense models ``base + scaling * B_i A_i`` do, for any method."""

from __future__ import annotations

from pathlib import Path

import torch


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(6, 5), torch.nn.Linear(5, 4)


def _adapters(tmp_path: Path) -> tuple[dict, list[Path], list[dict]]:
    import copy

    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file

    torch.manual_seed(0)
    net = _Net()
    base = {k: v.detach().clone() for k, v in net.state_dict().items()}
    paths, dense = [], []
    for i in range(2):
        torch.manual_seed(10 + i)
        m = get_peft_model(copy.deepcopy(net), LoraConfig(r=2, lora_alpha=4, target_modules=["fc1", "fc2"],
                                                          init_lora_weights=False))
        m.save_pretrained(str(tmp_path / f"lora{i}"))
        paths.append(tmp_path / f"lora{i}")
        f = load_file(str(tmp_path / f"lora{i}" / "adapter_model.safetensors"))
        d = dict(base)
        for name in ("fc1", "fc2"):  # by hand: W + (alpha / r) B A
            a, b = (f[f"base_model.model.{name}.lora_{x}.weight"] for x in "AB")
            d[f"{name}.weight"] = base[f"{name}.weight"] + 2.0 * b @ a
        dense.append(d)
        if i == 0:
            folded = {k: v.detach().clone() for k, v in m.merge_and_unload().state_dict().items()}
            for k in base:
                torch.testing.assert_close(d[k], folded[k], rtol=1e-6, atol=1e-7)  # the hand product is peft's
    return base, paths, dense


def test_one_lora_at_weight_one_is_lossless_and_two_merge_as_their_products(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from transferlab.merge import merge

    base, paths, dense = _adapters(tmp_path)
    one = merge("linear", base, [paths[0], base], weights=[1.0, 0.0], normalize=False)
    for k in base:
        torch.testing.assert_close(one[k], dense[0][k], rtol=1e-6, atol=1e-7)
    for method, opts in (("average", {}), ("ties", {"density": 0.5}), ("iso", {}), ("tsv", {})):
        got, want = merge(method, base, paths, **opts), merge(method, base, dense, **opts)
        for k in base:
            torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6)
    # the cross-term answer (factors averaged first) is another model
    f = [load_file(str(p / "adapter_model.safetensors")) for p in paths]
    a, b = ((f[0][f"base_model.model.fc1.lora_{x}.weight"] + f[1][f"base_model.model.fc1.lora_{x}.weight"]) / 2
            for x in "AB")
    wrong = base["fc1.weight"] + 2.0 * b @ a
    avg = merge("average", base, paths)["fc1.weight"]
    assert (avg - wrong).abs().max() > 1e-2
