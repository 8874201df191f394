"""Device, precision and model-name choices resolved for this machine."""
from __future__ import annotations

import torch

from ..precision import cpu_bf16_supported
from ..zoo import model_entry
from .choices import DEVICES, PRECISIONS, check_names

__all__ = ['resolve_device', 'resolve_precision', 'check_model_names']


def resolve_device(choice: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU; 'gpu' without CUDA is an error with a clear message."""
    if choice not in DEVICES:
        raise ValueError(f'device must be one of {DEVICES}, got {choice!r}')
    if choice == 'gpu' and not torch.cuda.is_available():
        raise ValueError('no CUDA GPU is available on this machine; choose CPU or auto')
    return torch.device('cuda' if choice != 'cpu' and torch.cuda.is_available() else 'cpu')


def resolve_precision(choice: str, device: torch.device) -> str:
    """'auto' -> fp16 on GPU, bf16 on CPUs with native bf16, else fp32."""
    if choice not in PRECISIONS:
        raise ValueError(f'precision must be one of {PRECISIONS}, got {choice!r}')
    if choice != 'auto':
        if torch.device(device).type == 'cpu' and choice == 'fp16':
            raise ValueError('fp16 runs on GPU only; on CPU choose bf16 or fp32')
        return choice
    if torch.device(device).type == 'cuda':
        return 'fp16'
    return 'bf16' if cpu_bf16_supported() else 'fp32'


def check_model_names(names) -> list[str]:
    """Zoo names from the UI or an API client, validated (unknown names raise ValueError naming them)."""
    return check_names(names, model_entry, 'model', 'zoo names')
