"""Grad-CAM panels for the fit report, through the grad-cam package (pytorch-grad-cam)."""

from __future__ import annotations

from typing import Any

import numpy as np


def last_spatial_layer(net: Any, x: Any) -> Any | None:
    """The last leaf module, in call order, whose output is a feature map [B, C, H, W] with H x W > 1 (not the
    global pool); None for token models (ViTs), where the maps end at the patch embedding."""
    import torch

    seen: list[tuple[Any, int, bool]] = []

    def hook(mod: Any, inp: Any, out: Any) -> None:
        if torch.is_tensor(out):
            seen.append((mod, out.ndim, out.ndim == 4 and out.shape[-1] * out.shape[-2] > 1))

    hooks = [m.register_forward_hook(hook) for m in net.modules() if m is not net and not list(m.children())]
    try:
        with torch.no_grad():
            net.eval()(x[:1])
    finally:
        for h in hooks:
            h.remove()
    spatial = [i for i, (_, _, sp) in enumerate(seen) if sp]
    if not spatial:
        return None
    last = spatial[-1]
    if any(nd == 3 for _, nd, _ in seen[last + 1:]):  # tokens after the last map: a transformer
        return None
    return seen[last][0]


def gradcam_panels(net: Any, data: Any, y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str],
                   mean: tuple[float, ...], std: tuple[float, ...], k: int = 4) -> tuple[list[dict[str, Any]], str]:
    """Up to ``k`` correct and ``k`` wrong test examples with their Grad-CAM maps for the predicted class."""
    import torch
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    right = np.flatnonzero(y_true == y_pred)[:k]
    wrong = np.flatnonzero(y_true != y_pred)[:k]
    idx = np.concatenate([right, wrong]).astype(int)
    if len(idx) == 0:
        return [], "no test examples"
    x = torch.stack([data[int(i)][0] for i in idx])
    layer = last_spatial_layer(net, x)
    if layer is None:
        return [], "Grad-CAM needs a spatial feature map; this model works on tokens (ViT), so no panel is shown."
    # the input carries the gradient: with a frozen backbone (head, linear probe, BitFit) the feature map would
    # otherwise have no grad_fn and Grad-CAM no gradient to weigh it with
    with GradCAM(model=net, target_layers=[layer]) as cam:
        maps = cam(input_tensor=x.clone().requires_grad_(True),
                   targets=[ClassifierOutputTarget(int(y_pred[i])) for i in idx])
    m = torch.tensor(mean).view(3, 1, 1)
    s = torch.tensor(std).view(3, 1, 1)
    panels = []
    for j, i in enumerate(idx):
        img = (x[j] * s + m).clamp(0, 1).permute(1, 2, 0).numpy()
        panels.append({"image": img, "cam": maps[j], "true": class_names[int(y_true[i])],
                       "pred": class_names[int(y_pred[i])], "correct": bool(y_true[i] == y_pred[i])})
    return panels, ""
