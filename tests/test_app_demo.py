"""Issue 7 through the app: with no ADE20K weights the demo models are the defaults, say what they are, and reach
the held-out floors on every bundled generated example via the compare API."""
import numpy as np
import pytest
from PIL import Image

from asmlp.ade20k import PALETTE
from asmlp.demo.evaluate import iou_report
from asmlp.demo.examples import EXAMPLE_INDICES, EXAMPLE_SIZE, example_path
from asmlp.demo.recipes import DEMO_SIZE
from asmlp.engine import default_short_side
from asmlp.presets import default_preset, preset
from asmlp.synthetic import example_seed, generate_scene
from asmlp.zoo import model_entry

from test_demo_weights import MIOU_FLOORS

gradio_client = pytest.importorskip('gradio_client')
from gradio_client import Client, handle_file  # noqa: E402

DEMO = sorted(MIOU_FLOORS)


def labels_from_mask(path):
    """Class indices back from a colour mask (lossless PNG; the scene classes have distinct palette colours)."""
    rgb = np.asarray(Image.open(path).convert('RGB')).astype(np.int64)
    keys = (PALETTE.astype(np.int64) @ np.array([65536, 256, 1]))
    lookup = {int(k): i for i, k in reversed(list(enumerate(keys)))}  # first index wins for duplicated colours
    return np.vectorize(lookup.__getitem__)(rgb @ np.array([65536, 256, 1]))


def default_models() -> list[str]:
    """The models the app preselects here (the preset whose weights are on disk, else the demo)."""
    return list(preset(default_preset())['models'])


def test_demo_models_are_the_defaults():
    assert sorted(default_models()) == DEMO


def test_the_app_proposes_the_demo_models_training_size():
    assert default_short_side(default_models()) == DEMO_SIZE
    assert all(model_entry(name)['inference']['short_side'] == DEMO_SIZE for name in DEMO)  # zoo data == recipe


@pytest.fixture(scope='module')
def client(app_url):
    return Client(app_url, verbose=False)


@pytest.mark.parametrize('index', EXAMPLE_INDICES)
def test_generated_examples_reach_the_floor_through_compare(client, index):
    path = example_path(index)
    truth = generate_scene(example_seed(index), EXAMPLE_SIZE).labels
    status, masks, *_ = client.predict(handle_file(str(path)), DEMO, 'cpu', 'fp32', DEMO_SIZE, 0.5,
                                       api_name='/compare')
    assert status.count('demo weights — trained on generated scenes') == 3
    for name, mask in zip(DEMO, masks):
        report = iou_report(labels_from_mask(mask['image']), truth)
        assert report.miou >= MIOU_FLOORS[name], (name, index, report.miou)
