"""The ZeroGPU path (asmlp/space/zerogpu.py) with a stand-in ``spaces`` module (tests/fakes/spaces: pickles the
arguments and results as ZeroGPU's worker queues do): every model handler (compare, measure, both ERFs, classify,
detect) is wrapped, and only on ZeroGPU; the app serves and runs them on the CPU, each wrapped handler's result survives
``pickle.dumps``, the GPU durations follow the chosen work; the cpu-basic defaults (demo preset, the cold-start
note) and the engine in a forked child."""
from __future__ import annotations

import json
import multiprocessing
import pickle
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from asmlp import presets
from asmlp.app import Work
from asmlp.bench.app import start_app, stop_app
from asmlp.engine import Engine
from asmlp.space import hardware, warmup, zerogpu
from asmlp.space.runtime import space_deployment

FAKES = Path(__file__).resolve().parent / 'fakes'
EXAMPLE = Path(__file__).resolve().parent.parent / 'assets' / 'examples' / 'generated_0.png'
DEMO = ['upernet_asmlp_nano', 'upernet_swin_nano', 'setr_pup_vit_nano']
MODEL_HANDLERS = {'compare', 'measure', 'erf', 'erf_imagenet', 'classify', 'detect'}
DETECTORS = ['mask_rcnn_asmlp_nano', 'mask_rcnn_swin_nano']
CLASSIFIERS = ['asmlp_tiny', 'deit_small']


@pytest.fixture
def fake_spaces(monkeypatch):
    monkeypatch.syspath_prepend(str(FAKES))
    monkeypatch.delitem(sys.modules, 'spaces', raising=False)
    import spaces
    monkeypatch.setitem(sys.modules, 'spaces', spaces)  # gone again after the test
    assert spaces.__version__ == '0.0-test'
    spaces.calls.clear()
    yield spaces
    join_counting()


def join_counting():
    """On ZeroGPU the app counts the preselected models in the background from start-up (asmlp/space/warmup.py)."""
    for counting in [t for t in threading.enumerate() if t.name == 'asmlp-count']:
        counting.join(120)


def handlers(demo) -> dict:
    return {f.api_name: f.fn for f in demo.fns.values() if f.api_name in MODEL_HANDLERS}


@pytest.fixture
def engine():
    with Engine() as engine:
        yield engine


@pytest.fixture
def tiny_classifiers():
    """The classifiers' cache with small untrained models (ImageNet weights are not here offline)."""
    from asmlp.classifiers import load_classifier
    from asmlp.engine import ModelCache
    small = {'asmlp_tiny': dict(embed_dim=16, depths=(1, 1, 1, 1)), 'deit_small': dict(depth=12, embed_dim=32,
                                                                                         num_heads=2)}
    return ModelCache(lambda name: load_classifier(name, download=False, **small[name]))


def test_model_handlers_are_wrapped_only_on_zero_gpu(fake_spaces, monkeypatch, engine):
    from asmlp.app import build_app
    monkeypatch.delenv('SPACES_ZERO_GPU', raising=False)
    plain = handlers(build_app(engine, deployment=space_deployment()))
    assert set(plain) == MODEL_HANDLERS and not any(hasattr(fn, 'zero_gpu') for fn in plain.values())
    monkeypatch.setenv('SPACES_ZERO_GPU', 'true')
    demo = build_app(engine, deployment=space_deployment())
    wrapped = handlers(demo)
    assert set(wrapped) == MODEL_HANDLERS and all(hasattr(fn, 'zero_gpu') for fn in wrapped.values())
    others = [f.fn for f in demo.fns.values() if f.api_name not in MODEL_HANDLERS]
    assert others and not any(hasattr(fn, 'zero_gpu') for fn in others)  # the explainer needs no GPU
    assert not any(hasattr(fn, 'zero_gpu') for fn in handlers(build_app(engine)).values())


def test_wrapped_handlers_run_on_the_cpu_and_return_picklable_cpu_objects(fake_spaces, monkeypatch, engine,
                                                                          tiny_classifiers):
    from asmlp.app import build_app
    monkeypatch.setenv('SPACES_ZERO_GPU', 'true')
    fns = handlers(build_app(engine, tiny_classifiers, deployment=space_deployment()))
    result = list(fns['compare'](str(EXAMPLE), DEMO, 'auto', 'fp32', 128, 0.5, 'none'))[-1]  # panels as they come
    status, masks, state = result[0], result[1], result[-1]
    assert 'Shift op: fast path (no CUDA device in this call).' in status
    assert len(masks) == 3 and state.models == DEMO
    measured = fns['measure'](state, 'auto', 'fp32', 128, 1)
    figure = fns['erf'](str(EXAMPLE), DEMO[:1], 64)
    imagenet_figure = fns['erf_imagenet'](str(EXAMPLE), CLASSIFIERS)
    markdown, table, data = fns['classify'](str(EXAMPLE), CLASSIFIERS)
    assert table['headers'] == ['rank', 'AS-MLP-T', 'DeiT-S'] and len(data) == 2
    for value in (result, measured, figure, imagenet_figure, (markdown, table, data)):
        assert pickle.loads(pickle.dumps(value)) is not None
    assert [c['function'] for c in fake_spaces.calls] == ['compare', 'measure', 'erf', 'erf_imagenet', 'classify']
    assert all(isinstance(c['duration'], int) and 15 <= c['duration'] <= 300 for c in fake_spaces.calls)


def test_every_wrapped_handler_computes_where_auto_points_in_the_gpu_worker(fake_spaces, monkeypatch, engine,
                                                                             tiny_classifiers):
    """On ZeroGPU the device 'auto' is resolved inside the GPU call, for every handler: the models each handler
    loads land on the device the worker resolves (the CPU here: no CUDA in this call)."""
    import torch

    from asmlp.app import build_app
    monkeypatch.setenv('SPACES_ZERO_GPU', 'true')
    resolved = []
    import asmlp.engine.devices as devices
    real = devices.resolve_device
    monkeypatch.setattr(devices, 'resolve_device', lambda choice: resolved.append(choice) or real(choice))
    fns = handlers(build_app(engine, tiny_classifiers, deployment=space_deployment()))
    fns['erf'](str(EXAMPLE), DEMO[:1], 64)
    fns['erf_imagenet'](str(EXAMPLE), CLASSIFIERS[:1])
    fns['classify'](str(EXAMPLE), CLASSIFIERS[:1])
    assert resolved == ['auto', 'auto', 'auto']  # none of them hard-codes the CPU
    assert engine.is_cached(DEMO[0], torch.device('cpu'))
    assert tiny_classifiers.contains(CLASSIFIERS[0], 'cpu')


def test_a_bad_request_is_refused_before_any_gpu_is_asked_for(fake_spaces, monkeypatch, engine):
    import gradio as gr

    from asmlp.app import build_app
    monkeypatch.setenv('SPACES_ZERO_GPU', 'true')
    fns = handlers(build_app(engine, deployment=space_deployment()))
    with pytest.raises(gr.Error, match='unknown model'):
        list(fns['compare'](str(EXAMPLE), ['no_such_model'], 'cpu', 'fp32', 128, 0.5, 'none'))
    with pytest.raises(gr.Error, match='Upload an image'):
        list(fns['compare'](None, DEMO, 'cpu', 'fp32', 128, 0.5, 'none'))
    with pytest.raises(gr.Error, match='Segment an image first'):
        fns['measure'](None, 'cpu', 'fp32', 128, 1)
    with pytest.raises(gr.Error, match='Upload an image'):
        fns['erf'](None, DEMO, 64)
    with pytest.raises(gr.Error, match='Upload an image'):
        fns['erf_imagenet'](None, CLASSIFIERS)
    with pytest.raises(gr.Error, match='unknown classifier'):
        fns['classify'](str(EXAMPLE), ['resnet50'])
    assert fake_spaces.calls == []


def test_the_gpu_duration_follows_the_work():
    base = ('upernet_asmlp_base', 'upernet_swin_base', 'setr_pup_vit_large')
    compare = lambda models, size, passes=1.0: zerogpu.estimate_seconds(  # noqa: E731
        Work('compare', 'segmenter', tuple(models), size, passes))
    tiny = compare(DEMO, 128)
    single = compare(base, 512)
    assert 15 <= tiny <= 20  # about the fixed overhead: three 2 M-parameter models at 128 px
    assert tiny < single < compare(base, 1024)
    assert single < compare(base, 512, 17.375) <= 300  # MS+flip
    assert compare(base, 512, 22) > compare(base, 512, 3)  # measure: runs + warm-up + memory forward
    classifiers = zerogpu.estimate_seconds(Work('classify', 'classifier', ('deit_base', 'swin_base'), 224, 1))
    assert 15 <= classifiers < single  # 87-88 M parameters, 15-18 GMACs at 224 each
    with pytest.raises(ValueError, match='unknown model'):
        compare(['nope'], 128)


def test_each_handler_says_what_it_runs():
    """The work descriptions the durations come from: the models, the size, the passes per model."""
    from asmlp.app import handlers as h
    from asmlp.app.views import CompareState
    assert h.compare_work('x.png', DEMO, 'auto', 'auto', 256, 0.5, 'ms-flip') == Work(
        'compare', 'segmenter', tuple(DEMO), 256, 2 * sum(r * r for r in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)))
    state = CompareState(image=None, results=[type('R', (), {'name': n})() for n in DEMO[:2]])
    assert h.measure_work(state, 'auto', 'auto', 128, 5) == Work('measure', 'segmenter', tuple(DEMO[:2]), 128, 7)
    assert h.erf_work('x.png', DEMO[:1], 64) == Work('erf', 'segmenter', tuple(DEMO[:1]), 64, 3)
    assert h.erf_imagenet_work('x.png', CLASSIFIERS) == Work('erf_imagenet', 'classifier', tuple(CLASSIFIERS), 224,
                                                              3)
    assert h.classify_work('x.png', None) == Work('classify', 'classifier', ('asmlp_tiny', 'swin_tiny',
                                                                             'deit_small'), 224, 1)
    assert h.compare_work(None, DEMO) is None and h.measure_work(None) is None


def test_the_instances_handler_is_wrapped_and_its_result_pickles(fake_spaces, monkeypatch):
    """detect on "ZeroGPU": wrapped, run through spaces.GPU with a duration from its work, the panels, the data and
    the state (every detection, for the threshold) come back through pickle; bad requests ask for no GPU."""
    import gradio as gr

    from asmlp.app import build_app
    from test_instances import detecting_loader
    monkeypatch.setenv('SPACES_ZERO_GPU', 'true')
    with Engine(detector_loader=detecting_loader) as engine:
        detect = handlers(build_app(engine, deployment=space_deployment()))['detect']
        assert hasattr(detect, 'zero_gpu')
        with pytest.raises(gr.Error, match='Upload an image'):
            detect(None, DETECTORS, 'auto', 'fp32', 0.3)
        with pytest.raises(gr.Error, match='unknown detector'):
            detect(str(EXAMPLE), ['upernet_asmlp_nano'], 'auto', 'fp32', 0.3)
        assert fake_spaces.calls == []
        result = detect(str(EXAMPLE), DETECTORS, 'auto', 'fp32', 0.3)
    status, panels, data, state = pickle.loads(pickle.dumps(result))
    assert 'Shift op: fast path (no CUDA device in this call).' in status
    assert len(panels) == 2 and [d['model'] for d in data] == DETECTORS
    assert [r.name for r in state.results] == DETECTORS and all(len(r.instances) for r in state.results)
    assert [c['function'] for c in fake_spaces.calls] == ['detect']
    demo_pair = fake_spaces.calls[0]['duration']
    tiny_pair = zerogpu.estimate_seconds(Work('detect', 'detector', ('mask_rcnn_asmlp_tiny', 'mask_rcnn_swin_tiny'),
                                              800, 1))
    assert 15 <= demo_pair < tiny_pair <= 300  # 48 M parameters and 260 GMACs each (Table 5) vs two nano ones


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


def test_off_zero_gpu_nothing_is_wrapped(monkeypatch, fake_spaces):
    monkeypatch.delenv('SPACES_ZERO_GPU', raising=False)
    assert zerogpu.handler_wrapper(fake_spaces) is None
    assert space_deployment().wrap is None
    monkeypatch.setenv('SPACES_ZERO_GPU', 'true')
    assert zerogpu.handler_wrapper(fake_spaces) is not None


@pytest.mark.slow
def test_the_app_serves_and_compares_with_spaces_on_zero_gpu(tmp_path):
    """The exported ZeroGPU folder's ``python app.py`` with the stand-in ``spaces`` importable and
    SPACES_ZERO_GPU=true: the papers' pair preselected; compare, measure, erf and classify through the public
    API, each a pickled "GPU" call with its duration."""
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
        status, _, data = client.predict(handle_file(str(EXAMPLE)), ['deit_small'], api_name='/classify')
        assert [row['title'] for row in data] == ['DeiT-S'] and 'no weights' in status
    finally:
        stop_app(proc)
    records = [json.loads(line) for line in calls.read_text().splitlines()]
    assert [r['function'] for r in records] == ['compare', 'measure', 'erf', 'classify']
    assert all(15 <= r['duration'] <= 300 and r['result_bytes'] > 0 for r in records)
    log = (tmp_path / 'app.log').read_text()
    assert 'Traceback' not in log, log[-3000:]


def test_cpu_basic_preselects_the_demo_models_and_zero_gpu_the_papers_pair(monkeypatch):
    monkeypatch.setattr(presets, 'available_kind', lambda name: 'ade20k')  # every ADE20K file on disk
    monkeypatch.delenv('SPACES_ZERO_GPU', raising=False)
    monkeypatch.delenv('SYSTEM', raising=False)
    assert hardware.space_preset() is None and space_deployment().preset is None
    assert presets.default_preset() == 'base'  # locally: the best preset whose weights are here
    monkeypatch.setenv('SYSTEM', 'spaces')
    assert presets.default_preset(space_deployment().preset) == 'demo'  # 2 vCPU: models that answer in seconds
    monkeypatch.setenv('SPACES_ZERO_GPU', 'true')
    assert presets.default_preset(space_deployment().preset) == 'base'


def test_a_cold_cpu_basic_space_says_what_is_loading(monkeypatch, engine):
    monkeypatch.delenv('SPACES_ZERO_GPU', raising=False)
    monkeypatch.delenv('SYSTEM', raising=False)
    assert warmup.start_warm_up(engine, DEMO) is None  # a local `python app.py` loads on first use
    monkeypatch.setenv('SPACES_ZERO_GPU', 'true')
    assert warmup.start_warm_up(engine, DEMO) is None  # ZeroGPU loads in its GPU worker (and counts meanwhile)
    join_counting()
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
    from asmlp.counts_cache import counts_path
    monkeypatch.setenv('ASMLP_CACHE_DIR', str(tmp_path))
    monkeypatch.setenv('SPACES_ZERO_GPU', 'true')
    assert not any(counts_path(name, (512, 2048)).is_file() for name in DEMO)
    with Engine() as engine:
        assert warmup.start_warm_up(engine, DEMO) is None
    join_counting()
    assert all(counts_path(name, (512, 2048)).is_file() for name in DEMO), 'the counts were not written'


def _run_in_child(engine, queue):
    queue.put(engine.run(lambda: 6 * 7))


def test_the_engine_works_in_a_forked_child_after_working_in_the_parent():
    """ZeroGPU forks its worker from a main process whose engine may be running work (its inference thread and
    the request holding the slot exist there only): the child's engine must run work, not wait for them."""
    engine = Engine(loader=lambda name: None)
    release = threading.Event()
    parent = threading.Thread(target=lambda: engine.run(release.wait), name='asmlp-test-parent-work')
    parent.start()  # the parent's request runs (holding the slot, its inference thread alive) while the child forks
    while not engine.gate.snapshot()['running']:
        time.sleep(0.01)
    context = multiprocessing.get_context('fork')
    queue = context.Queue()
    child = context.Process(target=_run_in_child, args=(engine, queue), daemon=True)
    child.start()
    try:
        assert queue.get(timeout=60) == 42
    finally:
        release.set()
        parent.join(10)
        child.join(10)
        if child.is_alive():
            child.kill()
        engine.close()
