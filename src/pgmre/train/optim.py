"""AdamW with the paper's parameter groups and the linear warmup/decay schedule."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

from pgmre.config import TrainConfig

# Biases and normalisation weights are not decayed (the BERT recipe the paper follows).
_NO_DECAY_MARKERS = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")


def _is_no_decay(name: str, param: nn.Parameter) -> bool:
    return param.ndim < 2 or any(marker in name for marker in _NO_DECAY_MARKERS)


def parameter_groups(
    model: nn.Module, cfg: TrainConfig, encoder_prefixes: Iterable[str] = ("text_encoder.",)
) -> list[dict]:
    """Four groups: {encoder, head} x {decay, no decay}.

    The pretrained encoder uses ``cfg.lr``; the newly initialised modules use ``cfg.head_lr`` (default: the same).
    """
    prefixes = tuple(encoder_prefixes)
    head_lr = cfg.head_lr if cfg.head_lr is not None else cfg.lr
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        key = (name.startswith(prefixes), _is_no_decay(name, param))
        groups.setdefault(key, []).append(param)
    result = []
    for (is_encoder, no_decay), params in sorted(groups.items()):
        result.append(
            {
                "params": params,
                "lr": cfg.lr if is_encoder else head_lr,
                "weight_decay": 0.0 if no_decay else cfg.weight_decay,
            }
        )
    return result


def _fused_devices() -> list[str]:
    """Device types with a fused AdamW kernel (a private torch helper: none if it moves)."""
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        return list(_get_fused_kernels_supported_devices())
    except (ImportError, AttributeError):
        return []


def adamw_kernel(impl: str, device: torch.device) -> dict[str, bool]:
    """AdamW's ``fused``/``foreach`` arguments: ``auto`` is the fused kernel wherever torch has one for
    the device (one pass over all parameters instead of a Python loop of small ops)."""
    if impl == "auto":
        impl = "fused" if device.type in _fused_devices() else "foreach"
    if impl == "fused":
        return {"fused": True}
    if impl == "foreach":
        return {"foreach": True}
    return {"foreach": False}


def build_optimizer(
    model: nn.Module, cfg: TrainConfig, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    device = next(model.parameters()).device
    kernel = adamw_kernel(cfg.optimizer_impl, device)
    optimizer = torch.optim.AdamW(
        parameter_groups(model, cfg), lr=cfg.lr, foreach=kernel.get("foreach"), fused=kernel.get("fused")
    )
    warmup = round(cfg.warmup_ratio * total_steps)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, max(total_steps, 1))
    return optimizer, scheduler


def keep_optimizer_kernel(optimizer: torch.optim.Optimizer, impl: str) -> None:
    """Re-apply the configured kernel after ``load_state_dict``, which copies the saved groups' ``fused``
    and ``foreach`` back (a resumed run would silently keep the kernel it was saved with)."""
    device = next(p.device for g in optimizer.param_groups for p in g["params"])
    kernel = adamw_kernel(impl, device)
    for group in optimizer.param_groups:
        group["fused"] = kernel.get("fused")
        group["foreach"] = kernel.get("foreach")
