"""``python -m asmlp evaluate / predict / synth-ade20k``: the demo models' recorded numbers reproduced on the
generated held-out set, saved predictions re-scored, bad data, refusals, resume, and the same numbers from two
torchrun processes (gloo)."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from asmlp.__main__ import main
from asmlp.evaluation.dataset import ADE20KFolder, BadSample, DataError, reduce_zero_label
from asmlp.evaluation.metrics import Totals, intersect_and_union
from asmlp.evaluation.synthetic_set import dataset_seed, write_synthetic_ade20k
from asmlp.synthetic import generate_scene, heldout_seeds

ROOT = Path(__file__).resolve().parent.parent
MODEL = 'upernet_swin_nano'
DEMO = ('upernet_asmlp_nano', 'upernet_swin_nano', 'setr_pup_vit_nano')


def rescore(pred_dir: Path, data_dir: Path) -> Totals:
    """The mIoU of saved prediction PNGs (1..150) against the annotations, computed here from the files."""
    totals = Totals()
    for png in sorted(pred_dir.glob('*.png')):
        pred = np.asarray(Image.open(png)).astype(np.int64) - 1
        gt = np.asarray(Image.open(data_dir / 'annotations' / 'validation' / png.name))
        totals.add(intersect_and_union(pred, reduce_zero_label(gt)))
    return totals


@pytest.fixture(scope='module')
def small(tmp_path_factory):
    """5 generated scenes (an odd number: unequal shards) and a single-process evaluation of them."""
    root = tmp_path_factory.mktemp('small')
    data = root / 'data'
    write_synthetic_ade20k(data, count=5, seed=3, size=64)
    out, preds = root / 'one.json', root / 'preds'
    assert main(['evaluate', '--data', str(data), '--models', MODEL, '--out', str(out), '--save-predictions',
                 str(preds), '--no-progress']) == 0
    return data, json.loads(out.read_text()), preds


def test_synth_ade20k_writes_the_real_encoding(tmp_path, capsys):
    assert main(['synth-ade20k', str(tmp_path / 'h'), '--heldout', '--count', '3']) == 0
    assert main(['synth-ade20k', str(tmp_path / 's'), '--count', '2', '--seed', '7', '--size', '48']) == 0
    for folder, seeds in ((tmp_path / 'h', heldout_seeds(3)), (tmp_path / 's', [dataset_seed(7, i) for i in range(2)])):
        data = ADE20KFolder(folder)
        assert len(data) == len(seeds)
        for i, seed in enumerate(seeds):
            scene = generate_scene(seed, 128 if folder.name == 'h' else 48)
            png = np.asarray(Image.open(data.annotation_path(data.names[i])))
            np.testing.assert_array_equal(png, scene.labels + 1)  # 1-based ids, lossless
            sample = data.load(i)
            np.testing.assert_array_equal(sample.label, scene.labels)  # reduce_zero_label undoes it
            assert np.abs(sample.image.astype(int) - scene.image).mean() < 4  # JPEG quality 95


@pytest.mark.slow
def test_demo_models_reproduce_their_recorded_heldout_miou(tmp_path):
    """Recorded: a mean over the 7 scene classes on lossless arrays; here: JPEG images, mmseg's nanmean over the
    classes present (the 7 when no other class is predicted). The difference is the JPEG noise."""
    data, out, preds = tmp_path / 'heldout', tmp_path / 'demo.json', tmp_path / 'preds'
    assert main(['synth-ade20k', str(data), '--heldout']) == 0
    threads = torch.get_num_threads()
    try:  # one thread: on a busy 2-core machine two OpenMP threads can be 10x slower (BENCHMARKS.md)
        assert main(['evaluate', '--data', str(data), '--models', *DEMO, '--out', str(out), '--save-predictions',
                     str(preds), '--no-progress', '--threads', '1']) == 0
    finally:
        torch.set_num_threads(threads)
    report = json.loads(out.read_text())
    for m in report['models']:
        recorded = json.loads((ROOT / 'weights' / 'demo' / m['model'] / 'config.json').read_text())['heldout']
        assert m['images'] == recorded['scenes'] == 64 and m['weights']['kind'] == 'demo'
        assert abs(m['mIoU'] - 100 * recorded['miou']) < 2, (m['model'], m['mIoU'], recorded['miou'])
        assert m['published']['mIoU'] == round(100 * recorded['miou'], 2)  # shown beside the measured one
        assert rescore(preds / m['model'], data).summary()['mIoU'] == m['mIoU']


def test_saved_predictions_rescore_to_the_same_numbers(small):
    data, report, preds = small
    m = report['models'][0]
    assert m['images'] == 5 and len(list((preds / MODEL).glob('*.png'))) == 5
    s = rescore(preds / MODEL, data).summary()
    assert (s['mIoU'], s['mAcc'], s['aAcc']) == (m['mIoU'], m['mAcc'], m['aAcc'])
    assert m['weights']['sha256'] and m['weights']['source'] and m['test_scales'] == [[512, 128]]
    assert set(m['per_class']) >= {'sky', 'building'} and m['per_class']['sky']['IoU'] is not None


def _copy(data: Path, tmp_path: Path) -> Path:
    target = tmp_path / 'copy'
    shutil.copytree(data, target)
    return target


def _break(root: Path, case: str) -> str:
    images, annotations = root / 'images' / 'validation', root / 'annotations' / 'validation'
    name = sorted(p.stem for p in images.glob('*.jpg'))[1]
    png = annotations / f'{name}.png'
    if case == 'missing annotation':
        png.unlink()
    elif case == 'missing image':
        (images / f'{name}.jpg').unlink()
    elif case == 'unreadable image':
        (images / f'{name}.jpg').write_bytes(b'not a jpeg at all')
    elif case == 'unreadable annotation':
        png.write_bytes(b'\x89PNG\r\n\x1a\n broken')
    elif case == 'size mismatch':
        Image.fromarray(np.ones((10, 12), np.uint8)).save(png)
    elif case == 'label 151-254':
        values = np.asarray(Image.open(png)).copy()
        values[0, :3] = (151, 200, 254)
        Image.fromarray(values).save(png)
    elif case == 'rgb annotation':
        Image.fromarray(np.ones((64, 64, 3), np.uint8)).save(png)
    return name


CASES = {'missing annotation': 'annotation file is missing', 'missing image': 'image file is missing',
         'unreadable image': 'cannot be decoded', 'unreadable annotation': 'annotation cannot be read',
         'size mismatch': 'annotation is 12x10 but the image is 64x64', 'label 151-254': '151, 200, 254',
         'rgb annotation': 'single-channel 8-bit'}


@pytest.mark.parametrize('case', CASES)
def test_each_bad_sample_is_named(case, small, tmp_path):
    root = _copy(small[0], tmp_path)
    name = _break(root, case)
    data = ADE20KFolder(root)
    assert len(data) == 5
    with pytest.raises(BadSample, match=CASES[case]) as info:
        data.load(data.names.index(name))
    assert info.value.name == name and name in str(info.value)


def test_bad_samples_stop_the_run_or_are_skipped_and_listed(small, tmp_path, capsys):
    root = _copy(small[0], tmp_path)
    bad = _break(root, 'label 151-254')
    assert main(['evaluate', '--data', str(root), '--models', MODEL, '--no-progress']) == 2
    err = capsys.readouterr().err
    assert f'{bad}.png' in err and '--skip-bad' in err and 'Traceback' not in err
    out = tmp_path / 'skip.json'
    assert main(['evaluate', '--data', str(root), '--models', MODEL, '--skip-bad', '--out', str(out),
                 '--no-progress']) == 0
    m = json.loads(out.read_text())['models'][0]
    assert m['images'] == 4 and [s['name'] for s in m['skipped']] == [bad]
    assert bad in capsys.readouterr().out


def test_layout_problems_say_what_is_missing(tmp_path):
    with pytest.raises(DataError, match='annotations/validation'):
        (tmp_path / 'images' / 'validation').mkdir(parents=True)
        ADE20KFolder(tmp_path)
    with pytest.raises(DataError, match='no .jpg images'):
        (tmp_path / 'annotations' / 'validation').mkdir(parents=True)
        ADE20KFolder(tmp_path)
    with pytest.raises(DataError, match='not a folder'):
        ADE20KFolder(tmp_path / 'nowhere')


def test_a_real_looking_subset_names_the_missing_images(tmp_path):
    root = tmp_path / 'unzipped' / 'ADEChallengeData2016'  # the folder the zip was unzipped into also works
    for i in (1, 2, 4):
        for sub, ext in (('images', 'jpg'), ('annotations', 'png')):
            (root / sub / 'validation').mkdir(parents=True, exist_ok=True)
            (root / sub / 'validation' / f'ADE_val_{i:08d}.{ext}').write_bytes(b'')
    data = ADE20KFolder(tmp_path / 'unzipped')
    assert len(data) == 3 and data.root == root
    # 1997 missing, 5 named
    assert 'ADE_val_00000003' in data.notes[0] and '2000' in data.notes[0] and '1992 more' in data.notes[0]


def test_untrained_models_are_refused_unless_allowed(small, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('ASMLP_WEIGHTS_DIR', str(tmp_path / 'empty'))  # no demo weights: the model is untrained
    args = ['evaluate', '--data', str(small[0]), '--models', MODEL, '--limit', '1', '--no-progress']
    assert main(args) == 2
    assert '--allow-untrained' in capsys.readouterr().err
    out = tmp_path / 'u.json'
    assert main(args + ['--allow-untrained', '--out', str(out)]) == 0
    assert json.loads(out.read_text())['models'][0]['weights']['kind'] == 'none'


def test_resume_after_an_interruption_gives_the_same_numbers(small, tmp_path, monkeypatch, capsys):
    data, report, _ = small
    out = tmp_path / 'r.json'
    args = ['evaluate', '--data', str(data), '--models', MODEL, '--out', str(out), '--no-progress']
    monkeypatch.setenv('ASMLP_EVAL_FAULT', '0:2')
    assert main(args) == 2
    assert 'injected fault' in capsys.readouterr().err and not out.exists()
    monkeypatch.delenv('ASMLP_EVAL_FAULT')
    assert main(args + ['--resume']) == 0
    m, ref = json.loads(out.read_text())['models'][0], report['models'][0]
    assert m['images_computed'] == 3 and m['images'] == 5
    assert m['areas'] == ref['areas'] and m['mIoU'] == ref['mIoU']
    capsys.readouterr()
    assert main(args + ['--resume', '--short-side', '96']) == 2  # other settings: not mixed in
    assert 'written with other settings' in capsys.readouterr().err


def _torchrun(args, env=None, timeout=240):
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', '-m', 'asmlp',
           *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, 'OMP_NUM_THREADS': '1', **(env or {})})


@pytest.mark.slow
def test_two_torchrun_processes_give_exactly_the_single_process_numbers(small, tmp_path):
    data, report, preds = small
    out = tmp_path / 'two.json'
    run = _torchrun(['evaluate', '--data', str(data), '--models', MODEL, '--out', str(out), '--save-predictions',
                     str(tmp_path / 'p2'), '--no-progress'])
    assert run.returncode == 0, run.stderr[-3000:]
    two, one = json.loads(out.read_text()), report
    assert two['processes'] == 2
    assert two['models'][0]['areas'] == one['models'][0]['areas'] and two['models'][0]['images'] == 5
    assert two['models'][0]['mIoU'] == one['models'][0]['mIoU']
    for png in (preds / MODEL).glob('*.png'):
        assert png.read_bytes() == (tmp_path / 'p2' / MODEL / png.name).read_bytes()


@pytest.mark.slow
def test_a_single_process_run_resumes_with_two_processes(small, tmp_path, monkeypatch):
    data, report, _ = small
    out = tmp_path / 'r.json'
    args = ['evaluate', '--data', str(data), '--models', MODEL, '--out', str(out), '--no-progress']
    monkeypatch.setenv('ASMLP_EVAL_FAULT', '0:3')
    assert main(args) == 2
    monkeypatch.delenv('ASMLP_EVAL_FAULT')
    run = _torchrun(args + ['--resume'])
    assert run.returncode == 0, run.stderr[-3000:]
    m = json.loads(out.read_text())['models'][0]
    assert m['images_computed'] == 2 and m['areas'] == report['models'][0]['areas']


@pytest.mark.slow
@pytest.mark.parametrize('how,message', [('raise', 'injected fault'), ('kill', 'SIGKILL'),
                                         ('hang', 'rank 0 of 2')])
def test_a_failing_rank_ends_the_torchrun_job_with_a_message(how, message, small, tmp_path):
    """Rank 1 raises, is killed, or hangs after one image: the job ends non-zero within 60 s, saying why (a hung
    rank: the others' collective times out after --dist-timeout)."""
    start = time.monotonic()
    run = _torchrun(['evaluate', '--data', str(small[0]), '--models', MODEL, '--no-progress', '--dist-timeout', '15'],
                    env={'ASMLP_EVAL_FAULT': f'1:1:{how}'}, timeout=120)
    assert time.monotonic() - start < 60
    assert run.returncode != 0
    assert message in run.stderr, run.stderr[-3000:]
    if how == 'raise':
        assert 'error (rank 1 of 2): injected fault' in run.stderr


def test_predict_writes_labels_equal_to_the_saved_predictions(small, tmp_path, capsys):
    data, _, preds = small
    out = tmp_path / 'out'
    assert main(['predict', str(data / 'images' / 'validation'), '--models', MODEL, '--out', str(out)]) == 0
    names = ADE20KFolder(data).names
    for name in names:
        labels = out / MODEL / f'{name}.png'
        assert labels.read_bytes() == (preds / MODEL / f'{name}.png').read_bytes() or np.array_equal(
            np.asarray(Image.open(labels)), np.asarray(Image.open(preds / MODEL / f'{name}.png')))
        colour, overlay = (np.asarray(Image.open(out / MODEL / f'{name}{s}.png')) for s in ('_color', '_overlay'))
        assert colour.shape == overlay.shape == (64, 64, 3)


def test_predict_names_a_bad_image_and_still_writes_the_others(small, tmp_path, capsys):
    images = small[0] / 'images' / 'validation'
    bad = tmp_path / 'broken.jpg'
    bad.write_bytes(b'\xff\xd8 not really')
    good = sorted(images.glob('*.jpg'))[0]
    assert main(['predict', str(good), str(bad), '--models', MODEL, '--out', str(tmp_path / 'o')]) == 1
    assert 'broken.jpg' in capsys.readouterr().err
    assert (tmp_path / 'o' / MODEL / f'{good.stem}_overlay.png').is_file()
    assert not (tmp_path / 'o' / MODEL / 'broken.png').exists()


@pytest.mark.slow
def test_ranks_with_different_weights_are_refused_naming_both_files(small, tmp_path):
    """Rank 1 runs with its own weights/ (as another node would): a copy of the demo model with one tensor changed.
    The run stops before summing, naming both files' sha256."""
    from safetensors.torch import load_file, save_file

    from asmlp.checkpoint_io import sha256_file
    demo = ROOT / 'weights' / 'demo' / MODEL
    other = tmp_path / 'other-node' / 'demo' / MODEL
    shutil.copytree(demo, other)
    tensors = load_file(other / 'model.safetensors')
    first = sorted(k for k, v in tensors.items() if v.is_floating_point())[0]
    tensors[first] = tensors[first] + 1.0
    save_file(tensors, other / 'model.safetensors')
    per_rank = ('if [ "$RANK" = 1 ]; then export ASMLP_WEIGHTS_DIR="$ASMLP_OTHER_WEIGHTS"; fi; '
                'exec "$0" -m asmlp "$@"')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', '--no-python',
           'sh', '-c', per_rank, sys.executable, 'evaluate', '--data', str(small[0]), '--models', MODEL,
           '--no-progress']
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240,
                         env={**os.environ, 'OMP_NUM_THREADS': '1',
                              'ASMLP_OTHER_WEIGHTS': str(tmp_path / 'other-node')})
    assert run.returncode != 0
    assert 'loaded different weights' in run.stderr, run.stderr[-3000:]
    for sha in (sha256_file(demo / 'model.safetensors'), sha256_file(other / 'model.safetensors')):
        assert sha in run.stderr
