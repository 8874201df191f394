"""The ZeroGPU path (asmlp/space/zerogpu.py) with a stand-in ``spaces`` module (tests/fakes/spaces: pickles the
arguments and results as ZeroGPU's worker queues do): the model handlers are wrapped only on ZeroGPU, the app
serves and compares on the CPU, each wrapped handler's result survives ``pickle.dumps``, the GPU durations follow
the chosen work; the cpu-basic defaults (demo preset, the cold-start note) and the engine in a forked child."""
from __future__ import annotations

import json
import multiprocessing
import pickle
import sys
import urllib.request
from pathlib import Path

import pytest

from asmlp import presets
from asmlp.bench.app import start_app, stop_app
from asmlp.service import Engine
from asmlp.space import warmup, zerogpu

FAKES = Path(__file__).resolve().parent / 'fakes'
EXAMPLE = Path(__file__).resolve().parent.parent / 'assets' / 'examples' / 'generated_0.png'
DEMO = ['upernet_asmlp_nano', 'upernet_swin_nano', 'setr_pup_vit_nano']
MODEL_HANDLERS = {'compare', 'measure', 'erf'}


@pytest.fixture
def fake_spaces(monkeypatch):
    monkeypatch.syspath_prepend(str(FAKES))
    monkeypatch.delitem(sys.modules, 'spaces', raising=False)
    import spaces
    monkeypatch.setitem(sys.modules, 'spaces', spaces)  # gone again after the test
    assert spaces.__version__ == '0.0-test'
    spaces.calls.clear()
    return spaces


def handlers(demo) -> dict:
    return {f.api_name: f.fn for f in demo.fns.values() if f.api_name in MODEL_HANDLERS}


def test_model_handlers_are_wrapped_only_on_zero_gpu(fake_spaces, monkeypatch):
    from asmlp.ui import build_app
    monkeypatch.delenv('SPACES_ZERO_GPU', raising=False)
    plain = handlers(build_app(Engine()))
    assert set(plain) == MODEL_HANDLERS and not any(hasattr(fn, 'zero_gpu') for fn in plain.values())
    monkeypatch.setenv('SPACES_ZERO_GPU', 'true')
    wrapped = handlers(build_app(Engine()))
    assert set(wrapped) == MODEL_HANDLERS and all(hasattr(fn, 'zero_gpu') for fn in wrapped.values())
    others = [f.fn for f in build_app(Engine()).fns.values() if f.api_name not in MODEL_HANDLERS]
    assert others and not any(hasattr(fn, 'zero_gpu') for fn in others)  # the explainer needs no GPU


def test_wrapped_handlers_run_on_the_cpu_and_return_picklable_cpu_objects(fake_spaces, monkeypatch):
    from asmlp.ui import build_app
    monkeypatch.setenv('SPACES_ZERO_GPU', 'true')
    fns = handlers(build_app(Engine()))
    result = list(fns['compare'](str(EXAMPLE), DEMO, 'cpu', 'fp32', 128, 0.5, 'none'))[-1]  # panels as they come
    status, masks, state = result[0], result[1], result[-1]
    assert 'Shift op: fast path (no CUDA device in this call).' in status
    assert len(masks) == 3 and state['models'] == DEMO
    measured = fns['measure'](state, 'cpu', 'fp32', 128, 1)
    figure = fns['erf'](str(EXAMPLE), DEMO[:1], 64)
    for value in (result, measured, figure):
        assert pickle.loads(pickle.dumps(value)) is not None
    assert [c['function'] for c in fake_spaces.calls] == ['compare', 'measure', 'erf']
    duration = fake_spaces.calls[0]['duration']
    assert isinstance(duration, int) and 15 <= duration <= 300


def test_a_bad_request_is_refused_before_any_gpu_is_asked_for(fake_spaces, monkeypatch):
    import gradio as gr

    from asmlp.ui import build_app
    monkeypatch.setenv('SPACES_ZERO_GPU', 'true')
    fns = handlers(build_app(Engine()))
    with pytest.raises(gr.Error, match='unknown model'):
        list(fns['compare'](str(EXAMPLE), ['no_such_model'], 'cpu', 'fp32', 128, 0.5, 'none'))
    with pytest.raises(gr.Error, match='Upload an image'):
        list(fns['compare'](None, DEMO, 'cpu', 'fp32', 128, 0.5, 'none'))
    with pytest.raises(gr.Error, match='Segment an image first'):
        fns['measure'](None, 'cpu', 'fp32', 128, 1)
    with pytest.raises(gr.Error, match='Upload an image'):
        fns['erf'](None, DEMO, 64)
    assert fake_spaces.calls == []


def test_the_gpu_duration_follows_the_work():
    base = ['upernet_asmlp_base', 'upernet_swin_base', 'setr_pup_vit_large']
    tiny = zerogpu.estimate_seconds('compare', DEMO, 128)
    single = zerogpu.estimate_seconds('compare', base, 512)
    assert 15 <= tiny <= 20  # about the fixed overhead: three 2 M-parameter models at 128 px
    assert tiny < single < zerogpu.estimate_seconds('compare', base, 1024)
    assert single < zerogpu.estimate_seconds('compare', base, 512, aug='ms-flip') <= 300
    assert zerogpu.estimate_seconds('measure', base, 512, runs=20) > zerogpu.estimate_seconds('measure', base, 512)
    assert zerogpu.estimate_seconds('erf', base, 512) == 300  # the CPU-side backward of three big backbones: capped
    with pytest.raises(ValueError, match='unknown model'):
        zerogpu.estimate_seconds('compare', ['nope'], 128)


def test_the_fused_kernel_is_used_where_it_compiles_else_the_fast_path_with_the_reason(monkeypatch):
    """The probe on the CPU under the Triton interpreter (conftest sets TRITON_INTERPRET=1): the kernel runs and
    agrees with the reference op; a kernel that fails to compile, or gives other numbers, means the fast path."""
    import torch

    from asmlp.ops import shift_triton
    assert zerogpu.probe_fused_kernel(torch.device('cpu')) == (
        'triton', 'fused Triton kernels (compiled on the CPU (Triton interpreter))')

    def no_compile(*args, **kwargs):
        raise RuntimeError('PTX .version 8.7 does not support .target sm_120\nmore')
    monkeypatch.setattr(shift_triton, 'shift_mlp', no_compile)
    backend, why = zerogpu.probe_fused_kernel('cpu')
    assert backend == 'fast' and 'does not compile' in why and 'sm_120' in why and 'more' not in why
    monkeypatch.setattr(shift_triton, 'shift_mlp', lambda *args, **kwargs: torch.zeros(1, 32, 12, 12))
    backend, why = zerogpu.probe_fused_kernel('cpu')
    assert backend == 'fast' and 'disagrees with the reference' in why


def test_off_zero_gpu_the_handler_is_itself(monkeypatch):
    monkeypatch.delenv('SPACES_ZERO_GPU', raising=False)
    fn = lambda image_path, models, short_side: None  # noqa: E731
    assert zerogpu.gpu_handler(fn, 'erf') is fn
    with pytest.raises(ValueError, match='unknown handler kind'):
        zerogpu.gpu_handler(fn, 'segment')


@pytest.mark.slow
def test_the_app_serves_and_compares_with_spaces_on_zero_gpu(tmp_path):
    """The exported ZeroGPU folder's ``python app.py`` with the stand-in ``spaces`` importable and
    SPACES_ZERO_GPU=true: the papers' pair preselected; compare, measure and erf through the public API, each a
    pickled "GPU" call with its duration."""
    from gradio_client import Client, handle_file

    from asmlp.space.export import export_space
    folder = export_space(tmp_path / 'space', 'zero-gpu').folder
    calls = tmp_path / 'calls.jsonl'
    proc, url = start_app(tmp_path / 'app.log', extra_env={
        'PYTHONPATH': str(FAKES), 'SPACES_ZERO_GPU': 'true', 'FAKE_SPACES_LOG': str(calls)}, cwd=folder)
    try:
        config = json.loads(urllib.request.urlopen(url + 'config', timeout=10).read())
        values = {c['props'].get('elem_id'): c['props'].get('value') for c in config['components']}
        assert values['preset'] == 'base'
        assert values['models'] == ['upernet_asmlp_base', 'upernet_swin_base', 'setr_pup_vit_large']
        client = Client(url, verbose=False)
        status, masks, *_ = client.predict(handle_file(str(EXAMPLE)), DEMO, 'auto', 'auto', 128, 0.5,
                                           api_name='/compare')
        assert 'Shift op: fast path (no CUDA device in this call).' in status and len(masks) == 3
        table, _ = client.predict('auto', 'auto', 128, 1, api_name='/measure')
        assert [row[0] for row in table['data']][:3] and len(table['data']) >= 3
        client.predict(handle_file(str(EXAMPLE)), DEMO[:1], 64, api_name='/erf')
    finally:
        stop_app(proc)
    records = [json.loads(line) for line in calls.read_text().splitlines()]
    assert [r['function'] for r in records] == ['compare', 'measure', 'erf']
    assert all(15 <= r['duration'] <= 300 and r['result_bytes'] > 0 for r in records)
    log = (tmp_path / 'app.log').read_text()
    assert 'Traceback' not in log, log[-3000:]


def test_cpu_basic_preselects_the_demo_models_and_zero_gpu_the_papers_pair(monkeypatch):
    monkeypatch.setattr(presets, 'available_kind', lambda name: 'ade20k')  # every ADE20K file on disk
    monkeypatch.delenv('SPACES_ZERO_GPU', raising=False)
    monkeypatch.delenv('SYSTEM', raising=False)
    assert presets.default_preset() == 'base'  # locally: the best preset whose weights are here
    monkeypatch.setenv('SYSTEM', 'spaces')
    assert presets.default_preset() == 'demo'  # 2 vCPU: the models that answer in seconds
    monkeypatch.setenv('SPACES_ZERO_GPU', 'true')
    assert presets.default_preset() == 'base'


def test_a_cold_cpu_basic_space_says_what_is_loading(monkeypatch):
    engine = Engine()
    monkeypatch.delenv('SPACES_ZERO_GPU', raising=False)
    monkeypatch.delenv('SYSTEM', raising=False)
    assert warmup.start_warm_up(engine, DEMO) is None  # a local `python app.py` loads on first use
    monkeypatch.setenv('SPACES_ZERO_GPU', 'true')
    assert warmup.start_warm_up(engine, DEMO) is None  # ZeroGPU loads in its GPU worker
    monkeypatch.delenv('SPACES_ZERO_GPU')
    assert not engine.cached()
    monkeypatch.setenv('SYSTEM', 'spaces')
    pending = warmup.WarmUp(engine, DEMO)
    assert 'Starting up' in pending.note() and '0 of 3 ready' in pending.note()
    assert 'UperNet + AS-MLP nano' in pending.note()
    warm = warmup.start_warm_up(engine, DEMO)
    assert warm.join(120)
    assert all(engine.is_cached(name, 'cpu') for name in DEMO)
    assert warm.note().startswith('Models ready since start-up')


def test_zero_gpu_counts_the_preselected_models_from_start_up(monkeypatch, tmp_path):
    """What the GPU duration estimate needs is counted in the background at start-up, not on the first request."""
    import time

    from asmlp.counts_cache import counts_path
    monkeypatch.setenv('ASMLP_CACHE_DIR', str(tmp_path))
    monkeypatch.setenv('SPACES_ZERO_GPU', 'true')
    assert not any(counts_path(name, (512, 2048)).is_file() for name in DEMO)
    assert warmup.start_warm_up(Engine(), DEMO) is None
    deadline = time.monotonic() + 120
    while not all(counts_path(name, (512, 2048)).is_file() for name in DEMO):
        assert time.monotonic() < deadline, 'the counts were not written'
        time.sleep(0.2)


def _run_in_child(engine, queue):
    queue.put(engine.run(lambda: 6 * 7))


def test_the_engine_works_in_a_forked_child_after_working_in_the_parent():
    """ZeroGPU forks its worker from a main process whose engine may have run work (its inference thread exists
    there only): the child's engine must run work, not wait for that thread."""
    engine = Engine(loader=lambda name: None)
    assert engine.run(lambda: 1) == 1  # the parent's inference thread now exists
    context = multiprocessing.get_context('fork')
    queue = context.Queue()
    child = context.Process(target=_run_in_child, args=(engine, queue), daemon=True)
    child.start()
    try:
        assert queue.get(timeout=60) == 42
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
