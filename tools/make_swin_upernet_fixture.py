"""Make ``tests/fixtures/upernet_swin_small_cfg/``: a small UperNet-Swin written by transformers 4.x, with its logits.

The openmmlab/upernet-swin-* checkpoints on the Hugging Face Hub were written by transformers 4.x (module names
``backbone.embeddings...``, ``...attention.self.query``, ``decode_head.*.batch_norm``, ``classifier``, int64
``relative_position_index`` / ``num_batches_tracked``). transformers 5.x renames these modules in memory, and 4.x
cannot share the project's environment (it needs huggingface_hub < 1.0), so this script runs once, in a throw-away
virtual environment, and its output is committed as a golden file for ``tests/test_convert.py``:

    python3 -m venv /tmp/tf446
    /tmp/tf446/bin/pip install torch==2.14.1 transformers==4.46.3 safetensors
    /tmp/tf446/bin/python tools/make_swin_upernet_fixture.py            # writes tests/fixtures/upernet_swin_small_cfg

Written files (about 1.8 MB, float32 as on the Hub):

* ``model.safetensors`` and ``config.json``: ``UperNetForSemanticSegmentation.save_pretrained`` of a small config
  (Swin embed 8, depths 2-2-2-2, heads 1-2-2-4, window 7; UperNet channels 32, auxiliary FCN 16 channels on stage 3;
  8 labels), every parameter and BatchNorm statistic random so no term can hide;
* ``reference.safetensors``: two fixed inputs (``input_64x64``, ``input_70x94``; 70x94 needs padding to the patch
  and to the window in every stage) and the model's logits for each (``logits_64x64``, ``logits_70x94``: HF's
  decode-head logits upsampled bilinearly, align_corners=False, to the input size), plus ``versions`` metadata.

The script is deterministic (fixed seed) and refuses to run under transformers >= 5.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parent.parent / 'tests' / 'fixtures' / 'upernet_swin_small_cfg'

SWIN = dict(embed_dim=8, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4], window_size=7, mlp_ratio=4.0)
UPERNET = dict(hidden_size=32, pool_scales=[1, 2, 3, 6], auxiliary_channels=16, auxiliary_in_channels=32,
               auxiliary_num_convs=1, auxiliary_concat_input=False, num_labels=8)
INPUT_SIZES = [(64, 64), (70, 94)]


def build_model():
    from transformers import SwinConfig, UperNetConfig, UperNetForSemanticSegmentation

    backbone = SwinConfig(**SWIN, out_features=['stage1', 'stage2', 'stage3', 'stage4'])
    config = UperNetConfig(backbone_config=backbone, use_auxiliary_head=True, **UPERNET)
    torch.manual_seed(0)
    model = UperNetForSemanticSegmentation(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'relative_position_bias_table' in name:
                p.normal_(std=1.0)  # HF zero-inits the tables: make a wrong index or layout visible
            elif p.dim() == 1:
                p.add_(torch.randn_like(p), alpha=0.2)  # LayerNorm / BatchNorm affines and biases off 1 / 0
            else:
                p.normal_(std=1.0 / p[0].numel() ** 0.5)
        for name, b in model.named_buffers():
            if name.endswith('running_mean'):
                b.normal_(std=0.2)
            elif name.endswith('running_var'):
                b.uniform_(0.5, 2.0)
            elif name.endswith('num_batches_tracked'):
                b.fill_(1234)
    return model.eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', type=Path, default=OUT)
    args = parser.parse_args(argv)

    import safetensors
    import transformers
    from safetensors.torch import save_file

    if int(transformers.__version__.split('.')[0]) >= 5:
        raise SystemExit(f'needs transformers 4.x (the Hub files\' layout), found {transformers.__version__}')

    model = build_model()
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)

    generator = torch.Generator().manual_seed(1)
    reference = {}
    with torch.no_grad():
        for height, width in INPUT_SIZES:
            x = torch.randn(1, 3, height, width, generator=generator)
            reference[f'input_{height}x{width}'] = x
            reference[f'logits_{height}x{width}'] = model(pixel_values=x).logits.contiguous()
    versions = {'torch': torch.__version__, 'transformers': transformers.__version__,
                'safetensors': safetensors.__version__}
    save_file(reference, args.out / 'reference.safetensors', metadata={'versions': json.dumps(versions)})
    total = sum(f.stat().st_size for f in args.out.iterdir())
    print(f'wrote {args.out} ({total / 1e6:.2f} MB): ' + ', '.join(sorted(f.name for f in args.out.iterdir())))


if __name__ == '__main__':
    main()
