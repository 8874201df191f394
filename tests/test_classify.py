"""The Classify tab's ``classify`` API: timm's transform + the model + softmax, the official AS-MLP file found by the
weights resolver, top-5 side by side with each model's weight status."""
import socket

import pytest
import timm
import torch
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, ImageNetInfo, create_transform

gradio_client = pytest.importorskip('gradio_client')
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from asmlp.classifiers import load_classifier  # noqa: E402
from asmlp.image_io import load_image  # noqa: E402
from asmlp.engine import Engine, ModelCache  # noqa: E402
from test_asmlp import official_forward, randomised  # noqa: E402  (the official AS-MLP forward, restated)

EXAMPLE = 'assets/examples/chelsea_cat.jpg'
ASMLP = dict(embed_dim=16, depths=(1, 2, 2, 1))
TINY = {'asmlp_tiny': ASMLP, 'deit_small': dict(depth=12, embed_dim=32, num_heads=2)}  # 12 blocks: the ERF taps


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture
def official_asmlp(tmp_path, monkeypatch):
    """An official-layout AS-MLP checkpoint ({'model': ...}) where the resolver looks: $ASMLP_WEIGHTS_DIR."""
    monkeypatch.setenv('ASMLP_WEIGHTS_DIR', str(tmp_path / 'weights'))
    monkeypatch.setenv('ASMLP_CACHE_DIR', str(tmp_path / 'cache'))
    monkeypatch.setenv('HF_HUB_CACHE', str(tmp_path / 'hf'))
    (tmp_path / 'weights').mkdir()
    torch.manual_seed(3)
    state_dict = randomised(timm.create_model('asmlp_tiny', **ASMLP)).state_dict()
    torch.save({'model': state_dict}, tmp_path / 'weights' / 'asmlp_tiny_patch4_shift5_224.pth')
    return state_dict


@pytest.fixture
def tiny_app(official_asmlp):
    from asmlp.app import build_app
    classifiers = ModelCache(lambda name: load_classifier(name, **TINY[name]))
    engine = Engine()
    demo = build_app(engine, classifiers)
    port = free_port()
    demo.launch(server_name='127.0.0.1', server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield Client(f'http://127.0.0.1:{port}/', verbose=False), official_asmlp
    finally:
        demo.close()
        engine.close()


@pytest.mark.slow
def test_classify_top5_is_timms_transform_plus_the_official_forward(tiny_app):
    client, official = tiny_app
    status, table, data = client.predict(handle_file(EXAMPLE), ['asmlp_tiny', 'deit_small'], api_name='/classify')
    asmlp_row, deit_row = data
    # the reference: the official AS-MLP eval transform (resize 256 bicubic, centre crop 224, ImageNet mean/std),
    # the official forward restated, softmax
    image, _ = load_image(EXAMPLE)
    transform = create_transform(input_size=(3, 224, 224), interpolation='bicubic', crop_pct=224 / 256,
                                 mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD)
    with torch.no_grad():
        _, logits = official_forward(transform(Image.fromarray(image))[None], official, ASMLP['depths'], 5)
    top = logits.softmax(-1)[0].topk(5)
    assert [e['index'] for e in asmlp_row['top5']] == top.indices.tolist()
    torch.testing.assert_close(torch.tensor([e['prob'] for e in asmlp_row['top5']]), top.values, rtol=1e-4, atol=1e-6)
    names = ImageNetInfo().label_descriptions()
    assert [e['label'] for e in asmlp_row['top5']] == [names[i] for i in top.indices.tolist()]
    assert asmlp_row['weights_kind'] == 'imagenet' and 'asmlp_tiny_patch4_shift5_224.pth' in asmlp_row['weights']
    assert deit_row['weights_kind'] == 'none' and deit_row['weights'].startswith('no weights')
    assert table['headers'] == ['rank', 'AS-MLP-T', 'DeiT-S'] and len(table['data']) == 5
    assert table['data'][0][1].startswith(names[top.indices[0]].split(',')[0])
    assert 'AS-MLP-T' in status and 'no weights' in status and 'ms |' in status


@pytest.mark.slow
def test_classify_api_of_the_app_default_classifiers(app_url, server_log):
    client = Client(app_url, verbose=False)
    assert '/classify' in client.view_api(return_format='dict', print_info=False)['named_endpoints']
    status, table, data = client.predict(handle_file(EXAMPLE), ['asmlp_tiny', 'swin_tiny', 'deit_small'],
                                         api_name='/classify')
    assert [r['title'] for r in data] == ['AS-MLP-T', 'Swin-T', 'DeiT-S']
    for row in data:
        probs = [e['prob'] for e in row['top5']]
        assert len(probs) == 5 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert row['input_size'] == [224, 224] and row['latency_ms'] > 0
    assert table['headers'] == ['rank', 'AS-MLP-T', 'Swin-T', 'DeiT-S'] and len(table['data']) == 5
    with pytest.raises(AppError, match="'resnet50'.*not in the list of choices"):
        client.predict(handle_file(EXAMPLE), ['resnet50'], api_name='/classify')
    with pytest.raises(AppError, match='Upload an image'):
        client.predict(None, ['deit_small'], api_name='/classify')
    assert 'Traceback' not in server_log.new()  # refusals, not faults


@pytest.mark.slow
def test_erf_of_the_imagenet_backbones_says_which_are_trained(tiny_app):
    import json
    client, _ = tiny_app
    plot = client.predict(handle_file(EXAMPLE), ['asmlp_tiny', 'deit_small'], api_name='/erf_imagenet')
    figure = json.loads(plot['plot'])
    texts = [a['text'] for a in figure['layout']['annotations']]
    assert '<b>AS-MLP-T (trained, ImageNet-1K)</b>' in texts and '<b>DeiT-S (untrained)</b>' in texts
    assert sum(t.startswith('block 12 ·') for t in texts) == 1 and sum(t.startswith('stage 4 ·') for t in texts) == 1
    assert len(figure['data']) == 8
