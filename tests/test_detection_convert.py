"""Official detector checkpoints in the layouts of svip-lab/AS-MLP-Object-Detection and
SwinTransformer/Swin-Transformer-Object-Detection (mmdet 2.11): the key tables below are transcribed from their module
definitions (``mmdet/models/backbones/{asmlp,swin_transformer}.py``, ``necks/fpn.py``, ``dense_heads/rpn_head.py``,
``roi_heads/bbox_heads/convfc_bbox_head.py``, ``roi_heads/mask_heads/fcn_mask_head.py``); the files are written as
mmcv's runner writes them (``meta``, ``state_dict``, ``optimizer``) with stride-0 zero tensors, so they stay small."""
import pytest
import torch

from asmlp.convert import CheckpointMismatchError, ConversionError
from asmlp.convert_detection import (convert_detection_state_dict, detect_detection_format, load_detector_file,
                                     load_detector_state_dict)
from asmlp.detectors import create_detector


def asmlp_backbone(embed=96, depths=(2, 2, 6, 2)):
    """mmdet/models/backbones/asmlp.py: PatchEmbed(proj 4x4, GroupNorm), per block norm1/norm2 and AxialShift
    (conv1, conv2_1, conv2_2, conv3 1x1 with bias; norm1, norm2) and Mlp (fc1, fc2 1x1 convs), PatchMerging of
    stages 0-2 (GroupNorm 4C, reduction 1x1 without bias), out norms norm0..3."""
    keys = {'backbone.patch_embed.proj.weight': (embed, 3, 4, 4), 'backbone.patch_embed.proj.bias': (embed,),
            'backbone.patch_embed.norm.weight': (embed,), 'backbone.patch_embed.norm.bias': (embed,)}
    for i, depth in enumerate(depths):
        c = embed * 2 ** i
        for j in range(depth):
            p = f'backbone.layers.{i}.blocks.{j}.'
            for norm in ('norm1', 'norm2', 'axial_shift.norm1', 'axial_shift.norm2'):
                keys[p + norm + '.weight'] = keys[p + norm + '.bias'] = (c,)
            for conv in ('conv1', 'conv2_1', 'conv2_2', 'conv3'):
                keys[p + f'axial_shift.{conv}.weight'], keys[p + f'axial_shift.{conv}.bias'] = (c, c, 1, 1), (c,)
            keys[p + 'mlp.fc1.weight'], keys[p + 'mlp.fc1.bias'] = (4 * c, c, 1, 1), (4 * c,)
            keys[p + 'mlp.fc2.weight'], keys[p + 'mlp.fc2.bias'] = (c, 4 * c, 1, 1), (c,)
        if i < 3:
            keys[f'backbone.layers.{i}.downsample.reduction.weight'] = (2 * c, 4 * c, 1, 1)
            for param in ('weight', 'bias'):
                keys[f'backbone.layers.{i}.downsample.norm.{param}'] = (4 * c,)
        keys[f'backbone.norm{i}.weight'] = keys[f'backbone.norm{i}.bias'] = (c,)
    return keys


def swin_backbone(embed=96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24), window=7):
    """mmdet/models/backbones/swin_transformer.py (Swin-OD): LayerNorms, WindowAttention (relative_position_bias_table
    [(2W-1)^2, heads], buffer relative_position_index [W^2, W^2], qkv / proj Linear), Mlp Linear, PatchMerging at
    the END of stages 0-2 (norm 4C, reduction Linear 4C -> 2C without bias), out norms norm0..3."""
    keys = {'backbone.patch_embed.proj.weight': (embed, 3, 4, 4), 'backbone.patch_embed.proj.bias': (embed,),
            'backbone.patch_embed.norm.weight': (embed,), 'backbone.patch_embed.norm.bias': (embed,)}
    for i, depth in enumerate(depths):
        c = embed * 2 ** i
        for j in range(depth):
            p = f'backbone.layers.{i}.blocks.{j}.'
            for norm in ('norm1', 'norm2'):
                keys[p + norm + '.weight'] = keys[p + norm + '.bias'] = (c,)
            keys[p + 'attn.relative_position_bias_table'] = ((2 * window - 1) ** 2, heads[i])
            keys[p + 'attn.relative_position_index'] = (window * window, window * window)
            keys[p + 'attn.qkv.weight'], keys[p + 'attn.qkv.bias'] = (3 * c, c), (3 * c,)
            keys[p + 'attn.proj.weight'], keys[p + 'attn.proj.bias'] = (c, c), (c,)
            keys[p + 'mlp.fc1.weight'], keys[p + 'mlp.fc1.bias'] = (4 * c, c), (4 * c,)
            keys[p + 'mlp.fc2.weight'], keys[p + 'mlp.fc2.bias'] = (c, 4 * c), (c,)
        if i < 3:
            keys[f'backbone.layers.{i}.downsample.reduction.weight'] = (2 * c, 4 * c)
            for param in ('weight', 'bias'):
                keys[f'backbone.layers.{i}.downsample.norm.{param}'] = (4 * c,)
        keys[f'backbone.norm{i}.weight'] = keys[f'backbone.norm{i}.bias'] = (c,)
    return keys


def neck_and_rpn(in_channels):
    """FPN (lateral 1x1 / fpn 3x3 ConvModules with bias, no norm) and RPNHead (3 anchors)."""
    keys = {}
    for k, c in enumerate(in_channels):
        keys[f'neck.lateral_convs.{k}.conv.weight'], keys[f'neck.lateral_convs.{k}.conv.bias'] = (256, c, 1, 1), (256,)
        keys[f'neck.fpn_convs.{k}.conv.weight'], keys[f'neck.fpn_convs.{k}.conv.bias'] = (256, 256, 3, 3), (256,)
    keys.update({'rpn_head.rpn_conv.weight': (256, 256, 3, 3), 'rpn_head.rpn_conv.bias': (256,),
                 'rpn_head.rpn_cls.weight': (3, 256, 1, 1), 'rpn_head.rpn_cls.bias': (3,),
                 'rpn_head.rpn_reg.weight': (12, 256, 1, 1), 'rpn_head.rpn_reg.bias': (12,)})
    return keys


def mask_head(prefix):
    """FCNMaskHead: 4 ConvModules 3x3 (with bias), deconv 2x2 [in, out, 2, 2], conv_logits 1x1 to 80 classes."""
    keys = {}
    for i in range(4):
        keys[f'{prefix}.convs.{i}.conv.weight'], keys[f'{prefix}.convs.{i}.conv.bias'] = (256, 256, 3, 3), (256,)
    keys.update({f'{prefix}.upsample.weight': (256, 256, 2, 2), f'{prefix}.upsample.bias': (256,),
                 f'{prefix}.conv_logits.weight': (80, 256, 1, 1), f'{prefix}.conv_logits.bias': (80,)})
    return keys


def mask_rcnn_heads():
    """Shared2FCBBoxHead (fc_cls 81 = 80 + background last, fc_reg 4 x 80) and one FCNMaskHead."""
    keys = {'roi_head.bbox_head.shared_fcs.0.weight': (1024, 256 * 7 * 7),
            'roi_head.bbox_head.shared_fcs.0.bias': (1024,),
            'roi_head.bbox_head.shared_fcs.1.weight': (1024, 1024), 'roi_head.bbox_head.shared_fcs.1.bias': (1024,),
            'roi_head.bbox_head.fc_cls.weight': (81, 1024), 'roi_head.bbox_head.fc_cls.bias': (81,),
            'roi_head.bbox_head.fc_reg.weight': (320, 1024), 'roi_head.bbox_head.fc_reg.bias': (320,)}
    keys.update(mask_head('roi_head.mask_head'))
    return keys


def cascade_heads():
    """Three ConvFCBBoxHeads (4 shared 3x3 convs without bias + SyncBN ``bn``, 1 fc) and three FCNMaskHeads."""
    keys = {}
    for s in range(3):
        p = f'roi_head.bbox_head.{s}.'
        for i in range(4):
            keys[p + f'shared_convs.{i}.conv.weight'] = (256, 256, 3, 3)
            for stat in ('weight', 'bias', 'running_mean', 'running_var'):
                keys[p + f'shared_convs.{i}.bn.{stat}'] = (256,)
            keys[p + f'shared_convs.{i}.bn.num_batches_tracked'] = ()
        keys.update({p + 'shared_fcs.0.weight': (1024, 256 * 7 * 7), p + 'shared_fcs.0.bias': (1024,),
                     p + 'fc_cls.weight': (81, 1024), p + 'fc_cls.bias': (81,),
                     p + 'fc_reg.weight': (320, 1024), p + 'fc_reg.bias': (320,)})
        keys.update(mask_head(f'roi_head.mask_head.{s}'))
    return keys


def official(backbone, heads, embed=96):
    return {**backbone, **neck_and_rpn([embed, 2 * embed, 4 * embed, 8 * embed]), **heads}


def zeros(table):
    """Stride-0 zero tensors of the table's shapes (int64 for counters and index buffers): tiny files."""
    out = {}
    for key, shape in table.items():
        integer = key.endswith(('num_batches_tracked', 'relative_position_index'))
        out[key] = torch.zeros((), dtype=torch.int64 if integer else torch.float32).expand(shape)
    return out


def save_mmcv(path, state_dict):
    """As mmcv_custom/runner/checkpoint.py saves: meta, state_dict, optimizer."""
    meta = {'mmcv_version': '1.3.1', 'time': 'Mon Jun  7 12:00:00 2021', 'epoch': 12, 'iter': 87960,
            'CLASSES': ('person', 'bicycle'), 'config': "model = dict(type='MaskRCNN')"}
    optimizer = {'state': {0: {'step': 10, 'exp_avg': torch.zeros(3)}},
                 'param_groups': [{'lr': 1e-4, 'betas': (0.9, 0.999), 'weight_decay': 0.05, 'params': [0]}]}
    torch.save({'meta': meta, 'state_dict': state_dict, 'optimizer': optimizer}, path)
    return path


ASMLP_MASK = official(asmlp_backbone(), mask_rcnn_heads())
SWIN_MASK = official(swin_backbone(), mask_rcnn_heads())
ASMLP_CASCADE = official(asmlp_backbone(), cascade_heads())
SWIN_CASCADE = official(swin_backbone(), cascade_heads())


def test_key_tables_have_the_published_sizes():
    def millions(table):
        return sum(torch.Size(s).numel() for k, s in table.items()
                   if not k.endswith(('num_batches_tracked', 'running_mean', 'running_var', 'position_index'))) / 1e6
    assert round(millions(ASMLP_MASK)) == round(millions(SWIN_MASK)) == 48  # Table 5
    assert round(millions(ASMLP_CASCADE)) == round(millions(SWIN_CASCADE)) == 86


@pytest.mark.parametrize('name, table, fmt', [('mask_rcnn_asmlp_tiny', ASMLP_MASK, 'asmlp-mmdet'),
                                              ('mask_rcnn_swin_tiny', SWIN_MASK, 'swin-official-mmdet')])
def test_official_mask_rcnn_file_loads_strictly(tmp_path, name, table, fmt):
    path = save_mmcv(tmp_path / 'official.pth', zeros(table))
    model, meta = load_detector_file(path, name)
    assert meta['source_format'] == fmt and meta['kind'] == 'coco' and meta['model'] == name
    assert len(meta['source_sha256']) == 64
    assert not any(p.any() for p in model.parameters())  # every parameter came from the file
    assert not model.training


@pytest.mark.parametrize('name, table', [('cascade_mask_rcnn_asmlp_tiny', ASMLP_CASCADE),
                                         ('cascade_mask_rcnn_swin_tiny', SWIN_CASCADE)])
def test_official_cascade_file_converts_and_loads_strictly(tmp_path, name, table):
    from asmlp.checkpoint_io import load_checkpoint
    path = save_mmcv(tmp_path / 'official.pth', zeros(table))
    converted, _ = convert_detection_state_dict(load_checkpoint(path), name)
    with torch.device('meta'):
        model = create_detector(name)
    load_detector_state_dict(model, converted)  # strict: raises on any mismatch
    assert set(converted) == set(model.state_dict())


def test_missing_unexpected_and_misshapen_keys_are_named(tmp_path):
    table = dict(ASMLP_MASK)
    del table['roi_head.mask_head.conv_logits.bias']
    table['roi_head.bbox_head.fc_extra.weight'] = (4, 4)
    table['roi_head.bbox_head.fc_cls.weight'] = (91, 1024)
    with pytest.raises(CheckpointMismatchError) as info:
        load_detector_file(save_mmcv(tmp_path / 'bad.pth', zeros(table)), 'mask_rcnn_asmlp_tiny')
    message = str(info.value)
    assert 'roi_head.mask_head.conv_logits.bias' in message and 'roi_head.bbox_head.fc_extra.weight' in message
    assert 'roi_head.bbox_head.fc_cls.weight: expected (81, 1024), found (91, 1024)' in message
    assert '\n' not in message


def test_wrong_family_architecture_or_layout_is_refused():
    with pytest.raises(ConversionError, match='is a AS-MLP detector.*mask_rcnn_swin_tiny is Swin'):
        convert_detection_state_dict(zeros(ASMLP_MASK), 'mask_rcnn_swin_tiny')
    with pytest.raises(ConversionError, match='Cascade Mask R-CNN checkpoint, mask_rcnn_asmlp_tiny is a Mask R-CNN'):
        convert_detection_state_dict(zeros(ASMLP_CASCADE), 'mask_rcnn_asmlp_tiny')
    mmdet_swin = {k.replace('backbone.layers.', 'backbone.stages.'): v for k, v in zeros(SWIN_MASK).items()}
    with pytest.raises(ConversionError, match="mmdetection's own Swin layout"):
        convert_detection_state_dict(mmdet_swin, 'mask_rcnn_swin_tiny')
    with pytest.raises(ConversionError, match='not a two-stage detector'):
        detect_detection_format({'backbone.patch_embed.proj.weight': torch.zeros(1)})
    with pytest.raises(ValueError, match='unknown detector'):
        convert_detection_state_dict({}, 'mask_rcnn_resnet50')


def test_swin_official_layout_maps_to_the_model_and_native_reads_back():
    converted, fmt = convert_detection_state_dict(zeros(SWIN_MASK), 'mask_rcnn_swin_tiny')
    assert fmt == 'swin-official-mmdet'
    # end of stage N -> start of stage N + 1 (timm), buffers dropped, heads untouched
    assert converted['backbone.layers.1.downsample.reduction.weight'].shape == (192, 384)
    assert 'backbone.layers.0.downsample.reduction.weight' not in converted
    assert not any(k.endswith('relative_position_index') for k in converted)
    assert converted['roi_head.bbox_head.fc_cls.weight'].shape == (81, 1024)
    again, fmt = convert_detection_state_dict(converted, 'mask_rcnn_swin_tiny')
    assert fmt == 'native-detector' and set(again) == set(converted)


def test_module_prefix_of_data_parallel_saves_is_stripped():
    wrapped = {f'module.{k}': v for k, v in zeros(ASMLP_MASK).items()}
    converted, fmt = convert_detection_state_dict(wrapped, 'mask_rcnn_asmlp_tiny')
    assert fmt == 'asmlp-mmdet' and set(converted) == set(ASMLP_MASK)
