"""asmlp.memory.peak_activation_bytes against torch's profiler (profile_memory=True) on the same forward."""
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import asmlp
from asmlp.memory import peak_activation_bytes


def profiler_peak_bytes(model, x) -> int:
    """Peak of the live bytes the profiler records: every event's own allocations minus frees, in time order."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof, torch.inference_mode():
        model(x)
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    live = peak = 0
    for e in events:
        live += e.cpu_memory_usage if e.name == '[memory]' else e.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    return asmlp.create_segmenter('upernet_asmlp_nano').eval()


def tracked(model, x) -> int:
    def forward():
        with torch.inference_mode():
            model(x)
    return peak_activation_bytes(forward, model, x, device=x.device)


@pytest.mark.parametrize('size', [(128, 128), (96, 160)])
def test_matches_the_profiler_and_holds_the_logits(model, size):
    x = torch.randn(1, 3, *size)
    got = tracked(model, x)
    expected = profiler_peak_bytes(model, x)
    assert abs(got - expected) <= 0.05 * expected, (got, expected)
    assert got >= 150 * size[0] * size[1] * 4  # the fp32 logits at the input size are alive at the end


def test_grows_with_the_input_and_meta_counts_the_same(model):
    small, large = torch.randn(1, 3, 96, 96), torch.randn(1, 3, 192, 192)
    assert tracked(model, large) > 3 * tracked(model, small)
    with torch.device('meta'):
        meta_model = asmlp.create_segmenter('upernet_asmlp_nano').eval()
    meta_x = torch.empty(1, 3, 192, 192, device='meta')
    with torch.no_grad():
        counted = peak_activation_bytes(lambda: meta_model(meta_x), meta_model, meta_x, device='meta')
    real = tracked(model, large)
    assert abs(counted - real) <= 0.02 * real, (counted, real)  # shapes decide the bytes, not the arithmetic



@pytest.mark.parametrize('device', ['cpu', 'meta'])
@pytest.mark.parametrize('pass_existing', [True, False])
def test_counts_each_storage_the_forward_creates_once_while_it_is_alive(device, pass_existing):
    x = torch.zeros(1000, device=device)  # exists before the call

    def forward():
        a = torch.empty(250, device=device)
        views = a.view(25, 10), a[::2], a[None]  # share a's storage: nothing new
        x.add_(1)  # in place on a tensor from before: nothing new
        of_x = x.view(10, 100)  # a view of a tensor from before: nothing new
        t = torch.tensor([0.5] * 100).to(device)  # made from data in the forward (then copied to meta): new
        f = torch.ones(50, device=device)
        del f  # freed before the end
        o = torch.empty(0, device=device)
        torch.add(t, t, out=o)  # grows o's storage to 100 floats
        return a, views, of_x, t, o

    existing = (x,) if pass_existing else ()
    assert peak_activation_bytes(forward, *existing, device=device) == (250 + 100 + 100) * 4  # a, t, o in fp32
    if device == 'cpu':
        assert peak_activation_bytes(forward, *existing, device='meta') == 0  # only the device asked for
