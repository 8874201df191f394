"""``python -m asmlp bench compile``: ``torch.compile`` against eager, per model, on this machine.

For each model (a timm classifier name such as ``asmlp_tiny`` or a zoo segmenter such as ``upernet_asmlp_nano``;
random seeded weights, eval mode, fp32, batch 1, NCHW): the graphs and graph breaks ``torch._dynamo.explain``
finds, the wall time of the first compiled call (Dynamo + Inductor compilation), warm eager and compiled latency,
how many graphs Dynamo compiled over all the calls (one per input shape means no recompiles), and the largest
difference from eager relative to the output's largest magnitude.
"""
from __future__ import annotations

import time

import torch

from .timing import machine_description, time_fn

DEFAULT_MODELS = ('asmlp_tiny', 'upernet_asmlp_nano')
DEFAULT_SIZES = {'asmlp_tiny': (224, 224)}  # classifiers at their ImageNet size; segmenters at their own below
SEGMENTER_SIZE = (128, 128)  # the nano demo models' training size


def build_model(name: str) -> torch.nn.Module:
    """A zoo segmenter by name, else a timm model (the asmlp ones are registered on import), random weights."""
    import timm

    from .. import models  # noqa: F401  (registers asmlp_* with timm)
    from ..zoo import create_segmenter, list_models
    torch.manual_seed(0)
    model = create_segmenter(name) if name in list_models() else timm.create_model(name)
    return model.eval()


def default_size(name: str) -> tuple[int, int]:
    from ..zoo import list_models
    return SEGMENTER_SIZE if name in list_models() else DEFAULT_SIZES.get(name, (224, 224))


def graph_breaks(model: torch.nn.Module, x: torch.Tensor) -> tuple[int, int, list[str]]:
    """``(graphs, graph breaks, reasons)`` of ``torch._dynamo.explain`` for ``model(x)``."""
    with torch.no_grad():
        explanation = torch._dynamo.explain(model)(x)
    torch._dynamo.reset()
    reasons = [f'{b.reason.splitlines()[0][:160]}' for b in explanation.break_reasons]
    return explanation.graph_count, explanation.graph_break_count, reasons


def bench_compile(name: str, size: tuple[int, int], repeat: int) -> dict:
    """Measure one model (see the module docstring)."""
    model = build_model(name)
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    graphs, breaks, reasons = graph_breaks(model, x)
    with torch.no_grad():
        eager_out = model(x)
        eager = time_fn(lambda: model(x), warmup=2, repeat=repeat, max_seconds=30)
        torch._dynamo.utils.counters.clear()
        compiled = torch.compile(model)
        start = time.perf_counter()
        out = compiled(x)
        compile_s = time.perf_counter() - start
        timed = time_fn(lambda: compiled(x), warmup=2, repeat=repeat, max_seconds=30)
        frames = int(torch._dynamo.utils.counters['stats']['unique_graphs'])
    torch._dynamo.reset()
    scale = eager_out.abs().max().clamp_min(1e-30)
    return dict(model=name, size=size, graphs=graphs, breaks=breaks, reasons=reasons, compile_s=compile_s,
                eager=eager, compiled=timed, compiled_graphs=frames,
                rel_diff=float((out.float() - eager_out.float()).abs().max() / scale))


def format_rows(rows: list[dict]) -> str:
    lines = ['| model | input | graphs / breaks (explain) | graphs compiled | compile (s) | eager (ms) | compiled (ms) '
             '| speed-up | max rel. diff |', '|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        lines.append(f'| {r["model"]} | {r["size"][0]}x{r["size"][1]} | {r["graphs"]} / {r["breaks"]} '
                     f'| {r["compiled_graphs"]} | {r["compile_s"]:.0f} | {r["eager"].median_ms:.1f} '
                     f'({r["eager"].p10_ms:.1f}–{r["eager"].p90_ms:.1f}) | {r["compiled"].median_ms:.1f} '
                     f'({r["compiled"].p10_ms:.1f}–{r["compiled"].p90_ms:.1f}) '
                     f'| {r["eager"].median_ms / r["compiled"].median_ms:.2f}x | {r["rel_diff"]:.1e} |')
    for r in rows:
        for reason in r['reasons']:
            lines.append(f'- {r["model"]} graph break: {reason}')
    return '\n'.join(lines)


def main(models=DEFAULT_MODELS, size: tuple[int, int] | None = None, repeat: int = 10, threads: int = 2) -> None:
    torch.set_num_threads(threads)
    print(f'# bench compile: torch.compile (Inductor, default mode) vs eager, fp32, batch 1, NCHW, no_grad; '
          f'median (p10–p90) of {repeat} warm runs')
    print(f'# {machine_description()}')
    rows = []
    for name in models:
        rows.append(bench_compile(name, tuple(size) if size else default_size(name), repeat))
        print(f'# {name}: compiled in {rows[-1]["compile_s"]:.0f} s', flush=True)
    print(format_rows(rows))
