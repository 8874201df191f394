"""``python -m asmlp bench detectors``: COCO detectors' inference latency side by side (Mask R-CNN AS-MLP-T vs Swin-T).

One image through mmdet 2.11's test pipeline (keep-ratio resize into (1333, 800), pad to 32, batch 1) and the whole
``predict``: backbone, FPN, RPN proposals, RoI heads, per-class NMS, mask head, paste at the image size. The
backbone alone is timed too. fp32, then bf16 autocast where the CPU has native bf16 (fp16 on a GPU). Weights are
random (seeded) except the classifier's bias, which puts ten classes above mmdet's 0.05 score threshold: the run
then reaches the 100 detections and masks a trained model gives on a busy image (a random model gives none, and
skips the mask branch). Models are timed back to back per precision, so ratios compare like with like.
"""
from __future__ import annotations

import torch

from ..detectors import create_detector
from ..precision import autocast
from .models import device_precisions, synthetic_image
from .timing import check_device, device_description, time_fn

DEFAULT_MODELS = ('mask_rcnn_asmlp_tiny', 'mask_rcnn_swin_tiny')
DEFAULT_SIZE = (800, 1333)


def busy_detector(name: str, device: torch.device) -> torch.nn.Module:
    """Zoo detector ``name`` with seeded random weights whose classifiers favour ten foreground classes."""
    torch.manual_seed(0)
    model = create_detector(name).eval()
    heads = model.roi_head.bbox_head
    for head in heads if isinstance(heads, torch.nn.ModuleList) else [heads]:
        with torch.no_grad():
            head.fc_cls.bias.zero_()
            head.fc_cls.bias[:10] = 6.0  # ten classes near 0.1 each, above the 0.05 threshold
            head.fc_cls.bias[-1] = -4.0  # background is the last class in mmdet 2.x
    return model.to(device)


def bench_detectors(names, size: tuple[int, int], repeat: int, precisions: tuple[str, ...],
                    device: torch.device) -> list[dict]:
    from ..models.detection.preprocess import preprocess_image
    image = synthetic_image(*size)
    models = {name: busy_detector(name, device) for name in names}
    rows = []
    for precision in precisions:
        for name, model in models.items():
            img, meta = preprocess_image(image, model.img_scale)
            img = img.to(device)
            with torch.inference_mode(), autocast(device, precision):
                backbone = time_fn(lambda: model.backbone(img), warmup=1, repeat=repeat, max_seconds=120,
                                   device=device)
                e2e = time_fn(lambda: model.predict(image), warmup=1, repeat=repeat, max_seconds=240, device=device)
                found = len(model.predict(image))
            rows.append(dict(model=name, precision=precision, backbone=backbone, e2e=e2e, detections=found,
                             padded=tuple(img.shape[-2:])))
            print(f'# {name} {precision}: predict {e2e}', flush=True)
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = ['| model | precision | input (padded) | backbone (ms) | predict (ms) | detections |',
             '|---|---|---|---|---|---|']
    for r in rows:
        lines.append(f'| {r["model"]} | {r["precision"]} | {r["padded"][0]}x{r["padded"][1]} | '
                     f'{r["backbone"].median_ms:.0f} ({r["backbone"].p10_ms:.0f}–{r["backbone"].p90_ms:.0f}) | '
                     f'{r["e2e"].median_ms:.0f} ({r["e2e"].p10_ms:.0f}–{r["e2e"].p90_ms:.0f}) | {r["detections"]} |')
    by = {(r['model'], r['precision']): r['e2e'].median_ms for r in rows}
    names = list(dict.fromkeys(r['model'] for r in rows))
    if len(names) >= 2:
        first, second = names[:2]
        for precision in dict.fromkeys(r['precision'] for r in rows):
            lines.append(f'\n{second} / {first} predict time, {precision}: '
                         f'{by[(second, precision)] / by[(first, precision)]:.2f}')
    return '\n'.join(lines)


def main(models=DEFAULT_MODELS, size=DEFAULT_SIZE, repeat: int = 3, threads: int = 2, device: str = 'cpu') -> None:
    device = check_device(device)
    torch.set_num_threads(threads)
    precisions = device_precisions(device)
    height, width = size
    print(f'# bench detectors on {device}: a {height}x{width} image, mmdet test pipeline into (1333, 800), batch 1, '
          f'median (p10–p90) of {repeat} warm runs; precisions {", ".join(precisions)}')
    print(f'# {device_description(device)}')
    print(format_rows(bench_detectors(models, (height, width), repeat, precisions, device)))
