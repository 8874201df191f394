"""``python -m asmlp erf`` (RepLKNet's area ratio of the mean ERF per stage) and the ERF figure's layout."""
import json

import numpy as np
import pytest
from PIL import Image

from asmlp.__main__ import main
from asmlp.explain import effective_rf, erf_area_ratio, erf_figure, normalize_erf
from asmlp.explain.cli import erf_inputs, image_files
from asmlp.explain.subjects import load_subject


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / 'images'
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, shape in enumerate([(80, 96, 3), (96, 72, 3)]):
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(folder / f'{i}.png')
    (folder / 'notes.txt').write_text('not an image')
    return folder


@pytest.mark.slow
def test_erf_json_is_the_area_ratio_of_the_mean_map(images, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('HF_HUB_CACHE', str(tmp_path / 'hf'))
    names = ['upernet_asmlp_nano', 'asmlp_tiny']
    assert main(['erf', '--models', *names, '--images', str(images), '--size', '64', '--json']) == 0
    report = json.loads(capsys.readouterr().out)
    assert report['images'] == ['0.png', '1.png'] and report['size'] == 64
    demo, classifier = report['models']
    assert demo['trained'] and 'demo' in demo['title']
    assert not classifier['trained'] and classifier['title'] == 'AS-MLP-T (untrained)'
    assert classifier['weights'].startswith('no weights')
    # the reference: RepLKNet's recipe written out here with the package's ERF primitives
    inputs = [x for _, x in erf_inputs(image_files(images), 64)]
    assert inputs[0].shape == (1, 3, 64, 64)
    subject = load_subject('asmlp_tiny', 64)
    maps = [effective_rf(subject.backbone, x) for x in inputs]
    for i, stage in enumerate(classifier['stages']):
        mean = normalize_erf((maps[0][i] + maps[1][i]) / 2)
        expected = erf_area_ratio(mean)
        assert stage['label'] == f'stage {i + 1}'
        assert stage['area_ratio'] == {str(t): pytest.approx(r) for t, (_, r) in expected.items()}
        ratios = list(stage['area_ratio'].values())
        assert ratios == sorted(ratios) and 0 < ratios[0] and ratios[-1] <= 1
    assert [s['label'] for s in demo['stages']] == ['stage 1', 'stage 2', 'stage 3', 'stage 4']


def test_erf_refuses_unknown_models_and_empty_folders(tmp_path):
    with pytest.raises(SystemExit, match='unknown model'):
        main(['erf', '--models', 'resnet50', '--images', str(tmp_path)])
    with pytest.raises(SystemExit, match='no images'):
        main(['erf', '--models', 'asmlp_tiny', '--images', str(tmp_path)])


def test_erf_figure_names_each_model_once_and_grows_with_its_rows():
    rng = np.random.default_rng(0)
    rows = {'AS-MLP-T (trained, ImageNet-1K)': [rng.random((32, 32)) for _ in range(4)],
            'DeiT-S (untrained)': [rng.random((32, 32)) for _ in range(4)]}
    labels = {'DeiT-S (untrained)': ['block 3', 'block 6', 'block 9', 'block 12']}
    fig = erf_figure(rows, stage_labels=labels)
    texts = [a.text for a in fig.layout.annotations]
    for name in rows:
        assert sum(name in t for t in texts) == 1  # once per row, not in every panel title
    panel = [t for t in texts if t not in {f'<b>{n}</b>' for n in rows}]
    assert len(panel) == 8 and all(len(t) < 40 for t in panel)
    assert sum(t.startswith('block 12 ·') for t in panel) == 1 and sum(t.startswith('stage 1 ·') for t in panel) == 1
    one = erf_figure({'A': rows['DeiT-S (untrained)']})
    assert fig.layout.height - one.layout.height >= 200  # sized to its rows
    ys = sorted({round(a.y, 3) for a in fig.layout.annotations})
    assert len(ys) == 2  # the row title and the panel titles of a row sit at its top; rows do not overlap
