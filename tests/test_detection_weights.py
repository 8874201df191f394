"""COCO detectors through the one weights resolver (asmlp.hub.load_detector): an official mmdet checkpoint dropped in
weights/ under its official name is found, converted and strictly loaded (kind ``coco``); a broken one is named and
the untrained model comes back; offline, the zoo's share link is named with the page to fetch it from by hand."""
import pytest
import torch

from asmlp.hub import load_detector, weights_on_disk
from test_detection_convert import ASMLP_MASK, save_mmcv, zeros

NAME = 'mask_rcnn_asmlp_tiny'
OFFICIAL = 'mask_rcnn_asmlp_tiny_patch4_shift5_mstrain_480-800_adamw_1x_coco.pth'


@pytest.fixture
def weights(tmp_path, monkeypatch):
    folder = tmp_path / 'weights'
    folder.mkdir()
    monkeypatch.setenv('ASMLP_WEIGHTS_DIR', str(folder))
    monkeypatch.setenv('ASMLP_CACHE_DIR', str(tmp_path / 'cache'))
    return folder


def test_an_official_file_in_weights_loads_as_coco_weights(weights):
    table = zeros(ASMLP_MASK)
    table['roi_head.bbox_head.fc_cls.bias'] = torch.arange(81, dtype=torch.float32)  # a value to recognise
    save_mmcv(weights / OFFICIAL, table)
    assert weights_on_disk(NAME) == 'coco'
    model, status = load_detector(NAME, download=False)
    assert status.kind == 'coco' and status.pretrained and status.format == 'asmlp-mmdet'
    assert status.source.endswith(OFFICIAL) and len(status.sha256) == 64
    assert torch.equal(model.roi_head.bbox_head.fc_cls.bias, torch.arange(81, dtype=torch.float32))
    assert not model.training


def test_a_broken_file_is_named_and_the_untrained_detector_comes_back(weights):
    table = zeros(ASMLP_MASK)
    del table['roi_head.mask_head.conv_logits.weight']
    save_mmcv(weights / OFFICIAL, table)
    model, status = load_detector(NAME, download=False)
    assert status.kind == 'none' and not status.pretrained
    assert 'roi_head.mask_head.conv_logits.weight' in status.message and OFFICIAL in status.message
    again, _ = load_detector(NAME, download=False)  # the untrained fallback is seeded: the same model each time
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_offline_the_share_link_is_named(weights, monkeypatch):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    _, status = load_detector(NAME)
    assert status.kind == 'none'
    assert any('sharepoint.com' in p or 'offline' in p for p in status.problems), status.problems
