"""Model metrics: parameters and multiply-accumulates, counted without arithmetic on the meta device.

MACs come from ``torch.utils.flop_counter.FlopCounterMode``, which counts 2 FLOPs per multiply-accumulate of
matmuls and convolutions (norms, activations and data movement such as the axial shift count 0). Papers report
MACs under the name "FLOPs" (AS-MLP Table 1 and 6, Swin, SETR), so :func:`count_gmacs` returns FLOPs / 2 / 1e9.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from .memory import peak_activation_bytes
from .models.lowres_conv import direct_convolutions

__all__ = ['count_params', 'count_gmacs', 'unfused_attention']


def count_params(model: nn.Module) -> int:
    """Number of parameters (shared tensors counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


@contextlib.contextmanager
def unfused_attention(model: nn.Module) -> Iterator[None]:
    """Run timm attention as explicit matmuls: FlopCounterMode does not count fused SDPA kernels on the CPU."""
    fused = [m for m in model.modules() if getattr(m, 'fused_attn', False)]
    for m in fused:
        m.fused_attn = False
    try:
        yield
    finally:
        for m in fused:
            m.fused_attn = True


def count_gmacs(model: nn.Module, input_size: tuple[int, ...], forward=None, as_executed: bool = False) -> float:
    """GMACs (1e9 multiply-accumulates) of one forward at ``input_size`` (N, C, H, W).

    The model is run on meta tensors (no arithmetic, no memory): build it under ``torch.device('meta')`` or pass
    a real model, whose parameters are then only read for their shapes. ``forward(model, x)`` overrides the call.
    Convolutions of resized maps are counted as the papers define them (:func:`direct_convolutions`), not as the
    cheaper equivalent that inference runs; ``as_executed=True`` counts what inference runs instead.
    """
    device = next(model.parameters()).device
    x = torch.empty(input_size, device=device if device.type == 'meta' else 'meta')
    if device.type != 'meta':
        model = _meta_copy(model)
    counter = FlopCounterMode(display=False)
    papers = contextlib.nullcontext() if as_executed else direct_convolutions()
    with torch.no_grad(), unfused_attention(model), papers, counter:
        (forward or (lambda m, t: m(t)))(model, x)
    return counter.get_total_flops() / 2 / 1e9


def _meta_copy(model: nn.Module) -> nn.Module:
    import copy
    with torch.device('meta'):
        clone = copy.deepcopy(model).to('meta')
    return clone


def segmenter_metrics(name: str, size: tuple[int, int] = (512, 2048)) -> dict:
    """Parameters (with and without auxiliary heads) and inference GMACs at ``size`` (H, W) of a zoo model,
    counted on the meta device, beside the published numbers.

    GMACs are those of the inference forward as the model runs at that size (backbone + neck + decode head, as
    mmcv's get_flops; SETR: every crop of its sliding window), auxiliary heads excluded. ``activation_mib``: the
    peak of the tensors that forward keeps alive at once in fp32 (:func:`asmlp.memory.peak_activation_bytes`),
    parameters excluded (``param_mib``).
    """
    from .zoo import build_segmenter, model_entry

    entry = model_entry(name)
    height, width = size
    if height < 1 or width < 1:
        raise ValueError(f'sizes must be >= 1, got {height}x{width}')
    with torch.device('meta'):
        model = build_segmenter(name).eval()
    params = count_params(model)
    aux = count_params(model.auxiliary_head) if hasattr(model, 'auxiliary_head') else 0
    x = torch.empty(1, 3, height, width, device='meta')
    with torch.no_grad():  # the inference forward as it runs (its exact low-resolution convolutions included)
        activations = peak_activation_bytes(lambda: model(x), model, x, device='meta')
    published = entry['published']
    return dict(
        name=name, family=entry['family'], title=entry['title'], inference=entry['inference']['mode'],
        params=params, params_no_aux=params - aux, gmacs=count_gmacs(model, (1, 3, height, width)),
        size=[height, width], activation_mib=activations / 2**20,
        param_mib=sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20,
        paper_params=published['params'], paper_gmacs=published['gmacs'], paper_miou_ss=published['miou_ss'],
        paper_miou_ms=published['miou_ms'], paper_source=published['source'],
    )
