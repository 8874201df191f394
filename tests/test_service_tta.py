"""MS+flip in the app's engine: the same code path as ``evaluate`` (asmlp.models.tta), the cost estimate from the
engine's own single-scale timings, and the refusal of requests beyond the inference time budget."""
import numpy as np
import pytest

from asmlp.models.tta import cost_factor, segment
from asmlp.service import Engine
from asmlp.synthetic import generate_scene

MODEL = 'upernet_swin_nano'


@pytest.fixture(scope='module')
def image():
    return generate_scene((9, 1), (64, 80)).image


def test_engine_ms_flip_is_the_evaluate_code_path(image):
    engine = Engine()
    [ms] = engine.segment(image, [MODEL], 'cpu', 'fp32', 64, aug='ms-flip')
    model = engine.get(MODEL, 'cpu').model
    np.testing.assert_array_equal(ms.labels, segment(model, image, 'ms-flip', 64))
    [ss] = engine.segment(image, [MODEL], 'cpu', 'fp32', 64)
    np.testing.assert_array_equal(ss.labels, segment(model, image, 'none', 64))
    assert engine.estimate_seconds(image.shape, [MODEL], 'cpu', 'fp32', 64, 'ms-flip') == ms.seconds  # measured
    fresh = Engine()
    [ss] = fresh.segment(image, [MODEL], 'cpu', 'fp32', 64)
    estimate = fresh.estimate_seconds(image.shape, [MODEL], 'cpu', 'fp32', 64, 'ms-flip')
    assert estimate == pytest.approx(cost_factor('ms-flip') * ss.seconds)  # not run yet: 17.4x single scale
    assert engine.estimate_seconds(image.shape, [MODEL], 'cpu', 'fp32', 96, 'ms-flip') is None  # never timed


def test_ms_flip_beyond_the_budget_is_refused_with_the_estimate(image):
    engine = Engine()
    [ss] = engine.segment(image, [MODEL], 'cpu', 'fp32', 64)
    engine.timeout = 0.5 * cost_factor('ms-flip') * ss.seconds  # MS+flip needs about twice what is left
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
