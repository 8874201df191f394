"""``python -m asmlp bench compile``: ``torch.compile`` against eager, per model, on this machine.

For each model (a timm classifier name such as ``asmlp_tiny`` or a zoo segmenter such as ``upernet_asmlp_nano``;
random seeded weights, eval mode, fp32, batch 1, NCHW): the graphs and graph breaks ``torch._dynamo.explain``
finds, the wall time of the first compiled call (Dynamo + Inductor compilation), warm eager and compiled latency
(measured alternately, call by call, so a shared machine's load hits both alike), Inductor with its default options
and with ``freezing`` (parameters folded in as constants and the conv weights prepacked for oneDNN: inference only),
how many graphs Dynamo compiled over all the calls (one per input shape means no recompiles), and the largest
difference from eager relative to the output's largest magnitude.
"""
from __future__ import annotations

import time

import torch

from .timing import Timing, machine_description, summarize

DEFAULT_MODELS = ('asmlp_tiny', 'upernet_asmlp_nano')
DEFAULT_SIZES = {'asmlp_tiny': (224, 224)}  # classifiers at their ImageNet size; segmenters at their own below
SEGMENTER_SIZE = (128, 128)  # the nano demo models' training size


def build_model(name: str) -> torch.nn.Module:
    """A zoo segmenter by name, else a timm model (the asmlp ones are registered on import), random weights."""
    import timm

    from .. import models  # noqa: F401  (registers asmlp_* with timm)
    from ..zoo import build_segmenter, list_models
    torch.manual_seed(0)
    model = build_segmenter(name) if name in list_models() else timm.create_model(name)
    return model.eval()


def check_model_name(name: str) -> None:
    """ValueError for a name that is neither a zoo segmenter nor a timm model."""
    import timm

    from .. import models  # noqa: F401  (registers asmlp_* with timm)
    from ..zoo import list_models
    if name not in list_models() and not timm.is_model(name):
        raise ValueError(f'unknown model {name!r}: neither a zoo segmenter ({", ".join(list_models())}) nor a timm '
                         f'model (e.g. asmlp_tiny)')


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


def paired_timings(first, second, warmup: int, repeat: int, max_seconds: float = 60.) -> tuple[Timing, Timing]:
    """Timings of two callables measured alternately, call by call, so both see the same machine load."""
    for _ in range(warmup):
        first(), second()
    samples = ([], [])
    deadline = time.perf_counter() + max_seconds
    while len(samples[0]) < repeat and (len(samples[0]) < 3 or time.perf_counter() < deadline):
        for fn, out in zip((first, second), samples):
            start = time.perf_counter()
            fn()
            out.append((time.perf_counter() - start) * 1e3)
    return summarize(samples[0]), summarize(samples[1])


# cold compiles (no cache from an earlier run); freezing: parameters as constants (inference only)
MODES = {'inductor': {'force_disable_caches': True},
         'inductor + freezing': {'force_disable_caches': True, 'freezing': True}}


def bench_compile(name: str, size: tuple[int, int], repeat: int, modes=tuple(MODES)) -> list[dict]:
    """Measure one model in each Inductor mode (see the module docstring)."""
    import torch._inductor.config as inductor_config
    model = build_model(name)
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    graphs, breaks, reasons = graph_breaks(model, x)
    rows = []
    for mode in modes:
        with torch.no_grad(), inductor_config.patch(MODES[mode]):
            eager_out = model(x)
            torch._dynamo.utils.counters.clear()
            compiled = torch.compile(model)
            start = time.perf_counter()
            out = compiled(x)
            compile_s = time.perf_counter() - start
            eager, timed = paired_timings(lambda: model(x), lambda: compiled(x), warmup=2, repeat=repeat)
            frames = int(torch._dynamo.utils.counters['stats']['unique_graphs'])
        torch._dynamo.reset()
        scale = eager_out.abs().max().clamp_min(1e-30)
        rows.append(dict(model=name, mode=mode, size=size, graphs=graphs, breaks=breaks, reasons=reasons,
                         compile_s=compile_s, eager=eager, compiled=timed, compiled_graphs=frames,
                         rel_diff=float((out.float() - eager_out.float()).abs().max() / scale)))
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = ['| model | input | compiler | graphs / breaks (explain) | graphs compiled | compile (s) | eager (ms) '
             '| compiled (ms) | speed-up | max rel. diff |', '|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        lines.append(f'| {r["model"]} | {r["size"][0]}x{r["size"][1]} | {r["mode"]} | {r["graphs"]} / {r["breaks"]} '
                     f'| {r["compiled_graphs"]} | {r["compile_s"]:.0f} | {r["eager"].median_ms:.1f} '
                     f'({r["eager"].p10_ms:.1f}–{r["eager"].p90_ms:.1f}) | {r["compiled"].median_ms:.1f} '
                     f'({r["compiled"].p10_ms:.1f}–{r["compiled"].p90_ms:.1f}) '
                     f'| {r["eager"].median_ms / r["compiled"].median_ms:.2f}x | {r["rel_diff"]:.1e} |')
    for r in rows[::len(MODES)]:
        for reason in r['reasons']:
            lines.append(f'- {r["model"]} graph break: {reason}')
    return '\n'.join(lines)


def main(models=DEFAULT_MODELS, size: tuple[int, int] | None = None, repeat: int = 10, threads: int = 2) -> None:
    for name in models:
        check_model_name(name)
    torch.set_num_threads(threads)
    print(f'# bench compile: torch.compile (Inductor, default options, and with freezing) vs eager, fp32, batch 1, '
          f'NCHW, no_grad; median (p10–p90) of {repeat} warm runs, eager and compiled alternating')
    print(f'# {machine_description()}')
    rows = []
    for name in models:
        rows += bench_compile(name, tuple(size) if size else default_size(name), repeat)
        times = ', '.join(f'{r["mode"]} {r["compile_s"]:.0f} s' for r in rows[-len(MODES):])
        print(f'# {name}: compiled ({times})', flush=True)
    print(format_rows(rows))
