"""The COCO detector zoo (asmlp/data/coco.json) against the AS-MLP paper's Table 5 and the official repositories'
READMEs, and ``python -m asmlp info --coco`` counting it (meta device)."""
import contextlib
import io
import json
from urllib.parse import urlsplit

import pytest

from asmlp.__main__ import main
from asmlp.convert_detection import DETECTION_FORMATS
from asmlp.detectors import architecture_entry, coco_classes, detector_entry, list_detectors

# AS-MLP paper (arXiv 2107.08391) Table 5, COCO val2017, 3x: params (M), FLOPs (G) at 1280x800, box AP, mask AP
TABLE5 = {
    'mask_rcnn_asmlp_tiny': (48, 260, 46.0, 41.5),
    'mask_rcnn_asmlp_small': (69, 346, 47.8, 42.9),
    'cascade_mask_rcnn_asmlp_tiny': (86, 739, 50.1, 43.5),
    'cascade_mask_rcnn_asmlp_small': (107, 824, 51.1, 44.2),
    'cascade_mask_rcnn_asmlp_base': (145, 961, 51.5, 44.7),
    'mask_rcnn_swin_tiny': (48, 264, 46.0, 41.6),
    'mask_rcnn_swin_small': (69, 354, 48.5, 43.3),
    'cascade_mask_rcnn_swin_tiny': (86, 745, 50.5, 43.7),
    'cascade_mask_rcnn_swin_small': (107, 838, 51.8, 44.7),
    'cascade_mask_rcnn_swin_base': (145, 982, 51.9, 45.0),
}
# svip-lab/AS-MLP-Object-Detection README: the only two released AS-MLP detectors
ASMLP_LINKS = {
    'mask_rcnn_asmlp_tiny': 'https://shanghaitecheducn-my.sharepoint.com/:u:/g/personal/liandz_shanghaitech_edu_cn/'
                            'EXh5rSXMKcNMlNNEnI7phmYBmw7aZ0PSDhFO-ZmHZ_Rr8A?e=JGwoTA',
    'cascade_mask_rcnn_asmlp_tiny': 'https://shanghaitecheducn-my.sharepoint.com/:u:/g/personal/'
                                    'liandz_shanghaitech_edu_cn/ERBgXv6TN2BMmRXDSQqkWwUBHJUQZiCwIhxl-1cZKd0iWg?e=ddwlrG',
}
# SwinTransformer/Swin-Transformer-Object-Detection README: release file -> (box AP, mask AP)
SWIN_FILES = {
    'v1.0.3/mask_rcnn_swin_tiny_patch4_window7_1x.pth': (43.7, 39.8),
    'v1.0.2/mask_rcnn_swin_tiny_patch4_window7.pth': (46.0, 41.6),
    'v1.0.2/mask_rcnn_swin_small_patch4_window7.pth': (48.5, 43.3),
    'v1.0.3/cascade_mask_rcnn_swin_tiny_patch4_window7_1x.pth': (48.1, 41.7),
    'v1.0.2/cascade_mask_rcnn_swin_tiny_patch4_window7.pth': (50.4, 43.7),
    'v1.0.2/cascade_mask_rcnn_swin_small_patch4_window7.pth': (51.9, 45.0),
    'v1.0.2/cascade_mask_rcnn_swin_base_patch4_window7.pth': (51.9, 45.0),
}


def run_info(*args):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(['info', '--coco', *args]) == 0
    return out.getvalue()


@pytest.fixture(scope='module')
def counted():
    return {row['name']: row for row in json.loads(run_info('--json'))}


def test_every_table5_detector_is_in_the_zoo_with_its_numbers():
    assert list_detectors() == list(TABLE5)
    for name, (params, gmacs, box, mask) in TABLE5.items():
        published = detector_entry(name)['published']
        assert (published['params'], published['gmacs'], published['box_ap'], published['mask_ap']) == \
            (params * 1_000_000, gmacs, box, mask), name
        assert published['schedule'] == '3x' and published['flops_size'] == [1280, 800]


def test_info_coco_counts_table5_within_two_percent(counted):
    assert list(counted) == list(TABLE5)
    for name, (params, gmacs, _, _) in TABLE5.items():
        row = counted[name]
        assert abs(row['params'] / (params * 1e6) - 1) < 0.02, (name, row['params'])
        assert abs(row['gmacs'] / gmacs - 1) < 0.02, (name, row['gmacs'])
        assert row['input'] == [1280, 800]
        assert (row['attention_gmacs'] > 0) == (detector_entry(name)['family'] == 'Swin')


def test_swin_mask_rcnn_rows_differ_by_the_attention_mmcv_did_not_count(counted):
    for name in ('mask_rcnn_swin_tiny', 'mask_rcnn_swin_small'):
        row = counted[name]
        assert abs((row['gmacs'] - row['attention_gmacs']) / TABLE5[name][1] - 1) < 0.003
        assert 'attention' in detector_entry(name)['count_note']


def test_info_coco_table_says_all_within_two_percent():
    text = run_info('--models', 'cascade_mask_rcnn_asmlp_tiny')
    assert 'cascade_mask_rcnn_asmlp_tiny' in text and 'All within 2% of Table 5.' in text


def test_weight_sources():
    for name in TABLE5:
        entry = detector_entry(name)
        assert entry['weights'] or 'never released' in entry['weights_note'], name
        for source in entry['weights']:
            assert source['kind'] == 'coco' and source['format'] in DETECTION_FORMATS
            assert DETECTION_FORMATS[source['format']] == entry['family']
            assert {'box_ap', 'mask_ap', 'schedule', 'source'} <= set(source['reported'])
    for name, link in ASMLP_LINKS.items():
        (source,) = detector_entry(name)['weights']
        assert (source['type'], source['url'], source['reported']['schedule']) == ('sharepoint', link, '1x')
        assert source['page'] == 'https://github.com/svip-lab/AS-MLP-Object-Detection'
    released = {}
    for name in TABLE5:
        for source in detector_entry(name)['weights']:
            if source['type'] == 'url':
                path = urlsplit(source['url']).path
                assert path.startswith('/SwinTransformer/storage/releases/download/')
                assert path.rsplit('/', 1)[1] == source['filename']
                released['/'.join(path.split('/')[-2:])] = (source['reported']['box_ap'], source['reported']['mask_ap'])
    assert released == SWIN_FILES
    # Swin-T: the 1x files first, the schedule of the only AS-MLP-T weights
    assert detector_entry('mask_rcnn_swin_tiny')['weights'][0]['reported']['schedule'] == '1x'


def test_architectures_follow_the_official_configs():
    mask, cascade = architecture_entry('mask_rcnn_asmlp_tiny'), architecture_entry('cascade_mask_rcnn_swin_tiny')
    assert mask['roi_head']['bbox_head']['type'] == 'Shared2FCBBoxHead'
    assert [h['kwargs']['target_stds'] for h in cascade['roi_head']['bbox_head']] == [
        [0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]]
    assert all(h['kwargs']['num_shared_convs'] == 4 and h['kwargs']['norm'] for h in cascade['roi_head']['bbox_head'])
    assert len(cascade['roi_head']['mask_head']) == 3
    assert mask['test_cfg'] == cascade['test_cfg'] == {
        'rpn': {'nms_pre': 1000, 'max_per_img': 1000, 'iou_threshold': 0.7, 'min_bbox_size': 0},
        'rcnn': {'score_thr': 0.05, 'iou_threshold': 0.5, 'max_per_img': 100, 'mask_thr_binary': 0.5}}
    # the configs' quirks: shift 3 in the 3x Small configs, the released Tiny files' shift 5, depths of Small
    shift = {name: detector_entry(name)['backbone']['kwargs'].get('shift_size') for name in TABLE5}
    assert shift['mask_rcnn_asmlp_tiny'] == shift['cascade_mask_rcnn_asmlp_tiny'] == 5
    assert shift['mask_rcnn_asmlp_small'] == shift['cascade_mask_rcnn_asmlp_small'] == 3
    assert detector_entry('cascade_mask_rcnn_asmlp_small')['backbone']['kwargs']['depths'] == [2, 2, 18, 2]
    for name in ('cascade_mask_rcnn_asmlp_tiny', 'cascade_mask_rcnn_asmlp_small', 'cascade_mask_rcnn_asmlp_base'):
        assert 'reconstruction' in detector_entry(name)['note']


def test_coco_classes_are_mmdets_80_with_the_sparse_category_ids():
    classes = coco_classes()
    assert [c['label'] for c in classes] == list(range(80))
    assert (classes[0]['name'], classes[0]['category_id']) == ('person', 1)
    assert (classes[-1]['name'], classes[-1]['category_id']) == ('toothbrush', 90)
    ids = [c['category_id'] for c in classes]
    assert ids == sorted(ids) and set(range(1, 91)) - set(ids) == {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}


def test_unknown_detector_names_the_known_ones():
    with pytest.raises(ValueError, match='unknown detector .*mask_rcnn_asmlp_tiny'):
        detector_entry('faster_rcnn_r50')
    with pytest.raises(SystemExit, match="asmlp info: error: unknown detector 'faster_rcnn_r50'; known detectors: "):
        run_info('--models', 'faster_rcnn_r50')
