"""Backend selection and dispatch: use_backend / $ASMLP_SHIFT_BACKEND, where the kernels run and what "auto" picks,
the custom ops (opcheck, torch.compile, meta / FLOP counting), the AS-MLP model on backend "triton" vs "reference"
on each device where it runs here (CPU under TRITON_INTERPRET=1, set in conftest.py; CUDA with it off), and the
fused benchmark's no-GPU behaviour."""
import subprocess
import sys

import pytest
import torch

import asmlp
from asmlp.ops import (
    BACKENDS, auto_choice, axial_shift, axial_shift_mlp, axial_shift_pair, axial_shift_reference, get_backend,
    resolve_backend, tf32_disabled, triton_problem, use_backend,
)
from asmlp.ops import backends

triton_available = not backends.triton_status()
needs_triton = pytest.mark.skipif(not triton_available, reason='triton does not import here')
DEVICES = ('cpu', 'cuda')


def skip_unless_runs(device, backend):
    """Skip (saying why) where ``backend`` cannot run on ``device`` here."""
    if backend == 'triton':
        problem = triton_problem(device)
    else:
        problem = '' if device == 'cpu' or torch.cuda.is_available() else 'no CUDA GPU here'
    if problem:
        pytest.skip(problem)


@pytest.fixture(autouse=True)
def clean_selection(monkeypatch):
    """Every test starts from the default (no explicit selection, no environment variable) and poisons the
    outputs of the Triton kernels (NaN-filled before they run)."""
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    monkeypatch.setattr(backends, '_selected', [None])
    if triton_available:
        from asmlp.ops import shift_triton
        monkeypatch.setattr(shift_triton, 'POISON_OUTPUTS', True)


def fresh(shape, dtype=torch.float32, memory_format=torch.contiguous_format):
    x = torch.randn(shape, dtype=torch.float64)
    return (x + torch.sign(x) * 0.5).to(dtype).contiguous(memory_format=memory_format)


# --------------------------------------------------------------------------------------------------------------------
# selection


def test_use_backend_as_call_and_context_manager():
    assert BACKENDS == ('auto', 'reference', 'fast', 'triton')
    assert get_backend() == 'auto'
    with use_backend('reference'):
        assert get_backend() == 'reference'
        with use_backend('fast') as selection:
            assert get_backend() == 'fast' and selection.name == 'fast'
        assert get_backend() == 'reference'
    assert get_backend() == 'auto'
    use_backend('fast')  # plain call: stays
    assert get_backend() == 'fast'
    use_backend(None)
    assert get_backend() == 'auto'


def test_environment_variable_and_precedence(monkeypatch):
    monkeypatch.setenv('ASMLP_SHIFT_BACKEND', 'reference')
    assert get_backend() == 'reference'
    with use_backend('fast'):
        assert get_backend() == 'fast'  # an explicit selection wins
    assert get_backend() == 'reference'
    monkeypatch.setenv('ASMLP_SHIFT_BACKEND', 'cuda')
    with pytest.raises(ValueError, match="'cuda' in \\$ASMLP_SHIFT_BACKEND.*auto, reference, fast, triton"):
        get_backend()


@pytest.mark.parametrize('name', ['Triton', 'cupy', '', 'default'])
def test_unknown_backend_names_raise(name):
    with pytest.raises(ValueError, match='valid backends: auto, reference, fast, triton'):
        use_backend(name)
    assert get_backend() == 'auto'  # a refused name changes nothing


def test_resolution_per_device(monkeypatch):
    cpu, meta = torch.empty(1, 4, 2, 2), torch.empty(1, 4, 2, 2, device='meta')
    assert resolve_backend(cpu) == 'fast' and resolve_backend(meta) == 'fast'  # auto: no CUDA here
    for name in ('reference', 'fast'):
        assert resolve_backend(cpu, name) == name
    assert resolve_backend(meta, 'triton') == 'triton'  # fake implementations: always fine
    # a missing / broken triton: auto stays on the fast path, an explicit "triton" says why it cannot run
    monkeypatch.setattr(backends, '_triton_probe', ['ImportError: no triton'])
    assert resolve_backend(cpu) == 'fast'
    with pytest.raises(RuntimeError, match='Triton is not usable here.*no triton'):
        resolve_backend(cpu, 'triton')
    assert resolve_backend(meta, 'triton') == 'triton'


@needs_triton
def test_where_the_kernels_run_and_what_auto_picks(monkeypatch):
    """The GPU rules checked here by standing in for a GPU: CUDA tensors run the kernels with the interpreter off;
    with it on (kernels defined for the CPU) "auto" stays on the fast path and an explicit "triton" says why."""
    from asmlp.ops import shift_triton
    assert triton_problem('meta') == ''
    assert 'CUDA (and interpreted CPU) tensors' in triton_problem('mps')
    assert auto_choice('cpu')[0] == 'fast' and 'CUDA tensors only' in auto_choice('cpu')[1]
    if not torch.cuda.is_available():
        assert triton_problem('cuda') == 'no CUDA GPU here'
        monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(shift_triton, 'INTERPRET', True)
    assert triton_problem('cpu') == ''
    assert 'unset it to run them on the GPU' in triton_problem('cuda')
    backend, why = auto_choice('cuda')
    assert backend == 'fast' and 'TRITON_INTERPRET=1' in why
    monkeypatch.setattr(shift_triton, 'INTERPRET', False)
    assert triton_problem('cuda') == '' and auto_choice('cuda')[0] == 'triton'
    assert 'TRITON_INTERPRET=1' in triton_problem('cpu')
    monkeypatch.setattr(backends, '_triton_probe', ['ImportError: no triton'])
    assert triton_problem('cuda') == 'Triton is not usable here (ImportError: no triton)'
    assert auto_choice('cuda') == ('fast', 'CUDA tensors, but the Triton kernels cannot run: Triton is not usable '
                                   'here (ImportError: no triton)')


@needs_triton
def test_triton_on_cpu_without_interpreter_is_a_clear_error(monkeypatch):
    from asmlp.ops import shift_triton
    monkeypatch.setattr(shift_triton, 'INTERPRET', False)
    x = fresh((1, 5, 3, 3))
    with use_backend('triton'), pytest.raises(RuntimeError, match='TRITON_INTERPRET=1'):
        axial_shift(x, 3)
    with pytest.raises(RuntimeError, match='TRITON_INTERPRET=1'):
        shift_triton.shift(x, 3, 5, 1)  # the kernels' own guard


def test_cpu_use_without_triton_in_a_subprocess():
    """With triton unimportable, importing asmlp and running an AS-MLP model (auto backend) works."""
    code = (
        "import sys; sys.modules['triton'] = None\n"
        "import timm, torch, asmlp\n"
        "from asmlp.ops import backends\n"
        "m = timm.create_model('asmlp_tiny', embed_dim=8, depths=(1, 1, 1, 1), num_classes=5).eval()\n"
        "y = m(torch.randn(1, 3, 32, 32))\n"
        "assert y.shape == (1, 5) and torch.isfinite(y).all()\n"
        "assert backends.triton_status().startswith(('ImportError', 'ModuleNotFoundError'))\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == 'ok', out.stderr


# --------------------------------------------------------------------------------------------------------------------
# dispatch


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('name', ['reference', 'fast', 'triton'])
def test_every_backend_shifts_bit_exactly(name, device):
    skip_unless_runs(device, name)
    for dtype, memory_format in [(torch.float32, torch.channels_last), (torch.float16, torch.contiguous_format)]:
        x = fresh((2, 11, 5, 6), dtype, memory_format).to(device)
        with use_backend(name):
            pair = axial_shift_pair(x, 5, 2)
            single = axial_shift(x, -2, 3, 1)
        assert torch.equal(pair[0], axial_shift_reference(x, 3, 5, 2))
        assert torch.equal(pair[1], axial_shift_reference(x, 2, 5, 2))
        assert torch.equal(single, axial_shift_reference(x, 2, 3, 1))


@needs_triton
def test_opcheck_custom_ops():
    x = fresh((2, 10, 5, 7), torch.float32, torch.channels_last)
    w, b = fresh((10, 10, 1, 1)) * 0.3, fresh((10,))
    cases = [
        (torch.ops.asmlp.shift.default, (x, 3, 5, 1, 1)),
        (torch.ops.asmlp.shift_pair.default, (x, 3, 2, -1)),
        (torch.ops.asmlp.shift_pair_adjoint.default, (x, fresh(x.shape), 5, 1, 1)),
        (torch.ops.asmlp.shift_mlp.default, (x, w, b, w.clone(), b.clone(), 5, 1)),
        (torch.ops.asmlp.shift_mlp.default, (x.contiguous(), w, None, w.clone(), None, 3, 2)),
    ]
    for op, args in cases:
        with_grad = tuple(a.clone().requires_grad_() if isinstance(a, torch.Tensor) else a for a in args)
        for call in (args, with_grad):
            results = torch.library.opcheck(op, call)
            assert set(results.values()) == {'SUCCESS'}, (op, results)


# --------------------------------------------------------------------------------------------------------------------
# the model


def tiny_asmlp():
    import timm
    torch.manual_seed(0)
    return timm.create_model('asmlp_tiny', embed_dim=8, depths=(1, 1, 1, 1), num_classes=5).eval()


def spy_fused(monkeypatch):
    from asmlp.ops import shift_triton
    calls = []
    real = shift_triton.shift_mlp
    monkeypatch.setattr(shift_triton, 'shift_mlp', lambda *a, **k: calls.append(a[0].shape) or real(*a, **k))
    return calls


@pytest.mark.parametrize('device', DEVICES)
def test_asmlp_triton_equals_reference(monkeypatch, device):
    skip_unless_runs(device, 'triton')
    with tf32_disabled():
        model = tiny_asmlp().to(device)
        keys = list(model.state_dict())
        calls = spy_fused(monkeypatch)
        for memory_format in (torch.contiguous_format, torch.channels_last):
            x = fresh((2, 3, 44, 52), memory_format=memory_format).to(device)
            with torch.no_grad():
                with use_backend('reference'):
                    ref = model(x)
                with use_backend('triton'):
                    out = model(x)
            assert torch.allclose(out, ref, rtol=1e-4, atol=1e-5), (out - ref).abs().max()
    assert len(calls) == 8  # one fused kernel per block (4 stages x depth 1), twice
    assert list(model.state_dict()) == keys


@pytest.mark.parametrize('device', DEVICES)
def test_asmlp_triton_training_path_matches_reference(monkeypatch, device):
    """With gradients the token mixer runs unfused (two-output shift kernel + convs); gradients match."""
    skip_unless_runs(device, 'triton')
    model = tiny_asmlp().train().to(device)
    calls = spy_fused(monkeypatch)
    x = fresh((1, 3, 36, 40), memory_format=torch.channels_last).to(device)
    grads = {}
    for name in ('reference', 'triton'):
        model.zero_grad()
        torch.manual_seed(1)  # drop path
        with use_backend(name), tf32_disabled():
            model(x).square().sum().backward()
        grads[name] = [p.grad.clone() for p in model.parameters()]
    assert not calls
    for a, b in zip(grads['triton'], grads['reference']):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


@needs_triton
def test_gmacs_identical_with_fused_path_on_and_off(monkeypatch):
    from torch.utils.flop_counter import FlopCounterMode

    from asmlp.metrics import count_gmacs
    model = tiny_asmlp()
    counts = {}
    for name in ('fast', 'reference', 'triton'):
        with use_backend(name):
            counts[name] = count_gmacs(model, (1, 3, 224, 224))
    assert counts['triton'] == counts['fast'] == counts['reference'] > 0
    # the fused op is what ran on the meta device, and its formula counts the two matmuls
    x = torch.empty(2, 16, 14, 10, device='meta')
    w = torch.empty(24, 16, 1, 1, device='meta')
    counter = FlopCounterMode(display=False)
    with use_backend('triton'), torch.no_grad(), counter:
        out = axial_shift_mlp(x, w, None, w, None, 5, 1)
    assert out.shape == (2, 24, 14, 10) and out.device.type == 'meta'
    assert counter.get_flop_counts()['Global'] == {torch.ops.asmlp.shift_mlp: 2 * (2 * (2 * 14 * 10) * 24 * 16)}
    with use_backend('triton'), torch.device('meta'):
        segmenter = asmlp.create_segmenter('upernet_asmlp_tiny').eval()
    with use_backend('fast'):
        fast = count_gmacs(segmenter, (1, 3, 64, 64))
    with use_backend('triton'):
        assert count_gmacs(segmenter, (1, 3, 64, 64)) == fast


@needs_triton
def test_torch_compile_traces_the_fused_model():
    model = tiny_asmlp()
    x = fresh((1, 3, 32, 36))
    with torch.no_grad(), use_backend('triton'):
        eager = model(x)
        torch._dynamo.reset()
        compiled = torch.compile(model, backend='aot_eager', fullgraph=True)
        assert torch.allclose(compiled(x), eager, rtol=1e-5, atol=1e-6)
    torch._dynamo.reset()


@pytest.mark.parametrize('device,dtype', [('cpu', torch.bfloat16), ('cuda', torch.float16)])
def test_fused_mixing_under_autocast(device, dtype):
    """Autocast to the device's low precision (what precision "auto" runs): the fused kernel runs in it."""
    skip_unless_runs(device, 'triton')
    with tf32_disabled():
        x = fresh((1, 12, 6, 5), memory_format=torch.channels_last).to(device)
        w, b = fresh((12, 12, 1, 1)).to(device) * 0.3, fresh((12,)).to(device)
        with torch.no_grad():
            with use_backend('fast'):
                ref = axial_shift_mlp(x, w, b, w, b)
            with use_backend('triton'), torch.autocast(device, dtype=dtype):
                out = axial_shift_mlp(x, w, b, w, b)
    assert out.dtype == dtype
    assert ((out.float() - ref).abs().max() / ref.abs().max()) < 2e-2


def test_axial_shift_mlp_argument_checks():
    x = fresh((1, 6, 4, 4))
    w = fresh((6, 6, 1, 1))
    with pytest.raises(ValueError, match='weight_w must be'):
        axial_shift_mlp(x, fresh((6, 5)), None, w, None)
    with pytest.raises(ValueError, match='either both branches have a bias'):
        axial_shift_mlp(x, w, fresh((6,)), w, None)
    with pytest.raises(ValueError, match='shift_size must be an odd'):
        axial_shift_mlp(x, w, None, w, None, 4)


# --------------------------------------------------------------------------------------------------------------------
# the benchmark


def test_bench_fused_without_gpu_says_so_and_imports_no_ui_libraries():
    code = (
        "import sys\n"
        "from asmlp.bench.fused import main\n"
        "main()\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('gradio', 'plotly')]\n"
    )
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert 'no CUDA GPU' in out.stdout


@needs_triton
def test_bench_fused_rows_on_cpu_smoke():
    """The benchmark's code paths on CPU (interpreter, tiny shapes, wall clock): structure only, no timings."""
    from asmlp.bench import fused
    rows = fused.run('cpu', fused.wall_timer(0, 1), batches=(1,), size=(32, 32), stages=((8, 6),),
                     models=('upernet_swin_tiny',), copy_bytes=1 << 16)
    table = fused.format_rows(rows)
    assert [r['section'] for r in rows] == ['copy ceiling'] + ['shift'] * 4 + ['token mixing'] * 2 + ['end to end']
    assert 'bit-exact True' in table and table.count('\n') == len(rows) + 1
