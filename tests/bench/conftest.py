"""Shared by the bench tests: a tiny zoo."""

import pytest


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory):
    """Three image models: two tiny timm EfficientNets with different random weights, and raw pixels."""
    import timm
    import torch
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("zoo")
    refs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        m = timm.create_model("test_efficientnet", pretrained=False)
        save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(d / f"w{seed}.safetensors"))
        refs.append(f"timm:test_efficientnet@{d / f'w{seed}.safetensors'}")
    refs.append("builtin:pixels")
    zoo = d / "zoo.yaml"
    zoo.write_text("name: tiny\nmodels:\n" + "".join(f"  - ref: '{r}'\n" for r in refs))
    return str(zoo), refs
