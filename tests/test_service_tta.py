"""MS+flip in the app's engine: the same code path as ``evaluate`` (asmlp.models.tta), the cost estimate from the
engine's own single-scale timings plus the measured per-pixel cost of each view at the image's size, and the
refusal of requests beyond the inference time budget."""
import numpy as np
import pytest
import torch

from asmlp.engine import Engine
from asmlp.engine.segment import measure_view_cost
from asmlp.models.tta import segment
from asmlp.synthetic import generate_scene

MODEL = 'upernet_swin_nano'
# mmseg 0.x tools/test.py --aug-test: img_ratios 0.5 .. 1.75, each unflipped and flipped (12 views); the network
# sees sum(2 r^2) = 17.375 single-scale passes' pixels
RATIOS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
VIEWS, PIXEL_FACTOR = 2 * len(RATIOS), sum(2 * r * r for r in RATIOS)


@pytest.fixture(scope='module')
def image():
    return generate_scene((9, 1), (64, 80)).image


@pytest.fixture
def engine():
    with Engine() as engine:
        yield engine


def test_engine_ms_flip_is_the_evaluate_code_path(image, engine):
    [ms] = engine.segment(image, [MODEL], 'cpu', 'fp32', 64, aug='ms-flip')
    model = engine.get(MODEL, 'cpu').model
    np.testing.assert_array_equal(ms.labels, segment(model, image, 'ms-flip', 64))
    [ss] = engine.segment(image, [MODEL], 'cpu', 'fp32', 64)
    np.testing.assert_array_equal(ss.labels, segment(model, image, 'none', 64))
    assert engine.estimate_seconds(image.shape, [MODEL], 'cpu', 'fp32', 64, 'ms-flip') == ms.seconds  # measured
    assert engine.estimate_seconds(image.shape, [MODEL], 'cpu', 'fp32', 96, 'ms-flip') is None  # never timed


def test_before_ms_flip_ran_the_estimate_adds_each_views_cost_at_the_images_size(image):
    """17.375 x the single-scale time, plus 12 views x the per-pixel cost of resizing and softmaxing 150-class
    logits x the image's pixels; that cost is measured once per device."""
    with Engine() as fresh:
        [ss] = fresh.segment(image, [MODEL], 'cpu', 'fp32', 64)
        estimate = fresh.estimate_seconds(image.shape, [MODEL], 'cpu', 'fp32', 64, 'ms-flip')
        per_pixel = fresh.timings.view_cost(torch.device('cpu'))
        assert fresh.timings.view_cost('cpu') == per_pixel  # measured once
    assert 0 < per_pixel < 1e-5  # seconds per pixel: 150 floats resized, exponentiated, added
    pixels = image.shape[0] * image.shape[1]
    assert estimate == pytest.approx(PIXEL_FACTOR * ss.seconds + VIEWS * per_pixel * pixels)
    assert estimate > PIXEL_FACTOR * ss.seconds
    big = measure_view_cost(torch.device('cpu'), size=(128, 128), repeat=2)
    assert 0 < big < 1e-5


def test_ms_flip_beyond_the_budget_is_refused_with_the_estimate(image, engine):
    [ss] = engine.segment(image, [MODEL], 'cpu', 'fp32', 64)
    engine.timeout = 0.5 * PIXEL_FACTOR * ss.seconds  # MS+flip needs about twice what is left
    with pytest.raises(ValueError, match=r'MS\+flip would take about .* beyond the .* inference time budget'):
        engine.segment(image, [MODEL], 'cpu', 'fp32', 64, aug='ms-flip')
    with pytest.raises(ValueError, match='test-time augmentation'):
        engine.segment(image, [MODEL], 'cpu', 'fp32', 64, aug='multi')


def test_compare_api_takes_the_tta_choice(app_url):
    from gradio_client import Client, handle_file
    client = Client(app_url, verbose=False)
    example = 'assets/examples/generated_0.png'
    status, masks, *_ = client.predict(handle_file(example), [MODEL], 'cpu', 'fp32', 128, 0.5, 'ms-flip',
                                       api_name='/compare')
    assert 'MS+flip' in status and len(masks) == 1
