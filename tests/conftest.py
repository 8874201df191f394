"""Test-wide settings: no network, no telemetry, deterministic small CPU runs."""
import os

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('HF_HUB_DISABLE_TELEMETRY', '1')
os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')
os.environ.setdefault('TRITON_INTERPRET', '1')  # must precede any @triton.jit definition

import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))
