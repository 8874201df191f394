"""The published number printed beside a measured mIoU is that of the checkpoint that was loaded."""
import json
from pathlib import Path

from asmlp.evaluation.published import published_miou


def test_the_number_follows_the_weight_source():
    hub = published_miou('upernet_swin_tiny', 'openmmlab/upernet-swin-tiny@refs/pr/1', 'none')
    official = published_miou('upernet_swin_tiny', 'weights/upernet_swin_tiny_patch4_window7_512x512.pth', 'ms-flip')
    assert (hub['mIoU'], official['mIoU']) == (44.41, 45.81)  # mmseg's checkpoint vs the Swin release
    assert 'mmseg' in hub['source'] and 'SwinSeg' in official['source']
    mla = published_miou('setr_mla_vit_large', 'https://download.openmmlab.com/mmsegmentation/v0.5/setr/'
                         'setr_mla_512x512_160k_b16_ade20k/setr_mla_512x512_160k_b16_ade20k_20210619_191057-f9741de7.pth',
                         'none')
    assert mla['mIoU'] == 47.54 and '0.x' in mla['source'] and '47.39' in mla['source']
    assert published_miou('upernet_asmlp_base', 'weights/upernet_asmlp_base_patch4_shift5_512x512_160k_ade20k.pth',
                          'ms-flip')['mIoU'] == 49.5


def test_untrained_weights_have_no_published_number_and_demo_weights_their_recorded_one():
    untrained = published_miou('upernet_asmlp_tiny', None, 'ms-flip', 'none')
    assert untrained['mIoU'] is None and '46.5' in untrained['source']
    folder = Path(__file__).resolve().parent.parent / 'weights' / 'demo' / 'upernet_asmlp_nano'
    recorded = json.loads((folder / 'config.json').read_text())['heldout']['miou']
    demo = published_miou('upernet_asmlp_nano', f'{folder}/', 'none', 'demo')
    assert demo['mIoU'] == round(100 * recorded, 2) and 'heldout.miou' in demo['source']
