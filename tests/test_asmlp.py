"""AS-MLP backbone: official checkpoint layout, official forward semantics, timm registration and features."""
import math

import pytest
import safetensors.torch
import timm
import torch
import torch.nn.functional as F

import asmlp  # noqa: F401  (registers the models)

VARIANTS = {  # name: (embed_dim, depths, published parameter count; AS-MLP paper Table 1)
    'asmlp_tiny': (96, (2, 2, 6, 2), 28_282_696),
    'asmlp_small': (96, (2, 2, 18, 2), 49_594_696),
    'asmlp_base': (128, (2, 2, 18, 2), 87_752_808),
}


def official_layout(embed_dim, depths, num_classes=1000):
    """Key -> shape of an official ImageNet checkpoint, written from the documented layout (not from the model)."""
    shapes = {
        'patch_embed.proj.weight': (embed_dim, 3, 4, 4), 'patch_embed.proj.bias': (embed_dim,),
        'patch_embed.norm.weight': (embed_dim,), 'patch_embed.norm.bias': (embed_dim,),
    }
    for i, depth in enumerate(depths):
        c = embed_dim * 2 ** i
        for j in range(depth):
            p = f'layers.{i}.blocks.{j}.'
            for norm in ('norm1', 'axial_shift.norm1', 'axial_shift.norm2', 'norm2'):
                shapes[p + norm + '.weight'] = shapes[p + norm + '.bias'] = (c,)
            for conv in ('conv1', 'conv2_1', 'conv2_2', 'conv3'):
                shapes[f'{p}axial_shift.{conv}.weight'] = (c, c, 1, 1)
                shapes[f'{p}axial_shift.{conv}.bias'] = (c,)
            shapes[p + 'mlp.fc1.weight'], shapes[p + 'mlp.fc1.bias'] = (4 * c, c, 1, 1), (4 * c,)
            shapes[p + 'mlp.fc2.weight'], shapes[p + 'mlp.fc2.bias'] = (c, 4 * c, 1, 1), (c,)
        if i < len(depths) - 1:
            shapes[f'layers.{i}.downsample.reduction.weight'] = (2 * c, 4 * c, 1, 1)
            shapes[f'layers.{i}.downsample.norm.weight'] = shapes[f'layers.{i}.downsample.norm.bias'] = (4 * c,)
    last = embed_dim * 2 ** (len(depths) - 1)
    shapes['norm.weight'] = shapes['norm.bias'] = (last,)
    shapes['head.weight'], shapes['head.bias'] = (num_classes, last), (num_classes,)
    return shapes


def test_registry():
    assert timm.list_models('asmlp_*') == sorted(VARIANTS)
    assert all(timm.is_model(name) for name in VARIANTS)


@pytest.mark.parametrize('name', sorted(VARIANTS))
def test_official_checkpoint_layout_loads_strict(name):
    embed_dim, depths, params = VARIANTS[name]
    layout = official_layout(embed_dim, depths)
    assert len(layout) == (257 if name == 'asmlp_tiny' else 497)
    with torch.device('meta'):
        model = timm.create_model(name)
        checkpoint = {k: torch.empty(shape) for k, shape in layout.items()}
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == layout
    model.load_state_dict(checkpoint, strict=True, assign=True)
    assert sum(p.numel() for p in model.parameters()) == params
    assert model.default_cfg['num_classes'] == 1000 and model.default_cfg['input_size'] == (3, 224, 224)


@pytest.mark.parametrize('name', sorted(VARIANTS))
def test_features_only_is_the_official_seg_backbone(name):
    embed_dim, depths, _ = VARIANTS[name]
    with torch.device('meta'):
        features = timm.create_model(name, features_only=True)
    backbone = {k: v for k, v in official_layout(embed_dim, depths).items() if not k.startswith(('norm.', 'head.'))}
    for i in range(4):
        c = embed_dim * 2 ** i
        backbone[f'norm{i}.weight'] = backbone[f'norm{i}.bias'] = (c,)
    assert {k: tuple(v.shape) for k, v in features.state_dict().items()} == backbone
    assert features.feature_info.channels() == [embed_dim * 2 ** i for i in range(4)]
    assert features.feature_info.reduction() == [4, 8, 16, 32]


# --- a functional re-statement of the official forward (svip-lab/AS-MLP models/as_mlp.py, seg backbone padding) ---

def official_shift(x, shift_size, dim):
    pad = shift_size // 2
    _, _, height, width = x.shape
    x = F.pad(x, (pad, pad, pad, pad))
    chunks = torch.chunk(x, shift_size, 1)
    x = torch.cat([torch.roll(c, s, dim) for c, s in zip(chunks, range(-pad, pad + 1))], 1)
    return x[:, :, pad:pad + height, pad:pad + width]


def gn(x, sd, p):
    return F.group_norm(x, 1, sd[p + '.weight'], sd[p + '.bias'], 1e-5)


def conv(x, sd, p):
    return F.conv2d(x, sd[p + '.weight'], sd.get(p + '.bias'))


def official_block(x, sd, p, shift_size):
    shortcut = x
    x = gn(x, sd, p + 'norm1')
    x = F.gelu(gn(conv(x, sd, p + 'axial_shift.conv1'), sd, p + 'axial_shift.norm1'))
    x_lr = F.gelu(conv(official_shift(x, shift_size, 3), sd, p + 'axial_shift.conv2_1'))
    x_td = F.gelu(conv(official_shift(x, shift_size, 2), sd, p + 'axial_shift.conv2_2'))
    x = conv(gn(x_lr + x_td, sd, p + 'axial_shift.norm2'), sd, p + 'axial_shift.conv3')
    x = shortcut + x
    return x + conv(F.gelu(conv(gn(x, sd, p + 'norm2'), sd, p + 'mlp.fc1')), sd, p + 'mlp.fc2')


def official_forward(img, sd, depths, shift_size):
    """Returns (pre-downsample stage maps, logits)."""
    height, width = img.shape[-2:]
    x = F.pad(img, (0, (4 - width % 4) % 4, 0, (4 - height % 4) % 4))
    x = gn(F.conv2d(x, sd['patch_embed.proj.weight'], sd['patch_embed.proj.bias'], stride=4), sd, 'patch_embed.norm')
    stages = []
    for i, depth in enumerate(depths):
        for j in range(depth):
            x = official_block(x, sd, f'layers.{i}.blocks.{j}.', shift_size)
        stages.append(x)
        if i < len(depths) - 1:
            x = F.pad(x, (0, x.shape[3] % 2, 0, x.shape[2] % 2))
            x = torch.cat([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], 1)
            x = conv(gn(x, sd, f'layers.{i}.downsample.norm'), sd, f'layers.{i}.downsample.reduction')
    x = gn(x, sd, 'norm').mean((2, 3))
    return stages, F.linear(x, sd['head.weight'], sd['head.bias'])


def randomised(model):
    """Every parameter random (GroupNorm affines too), so no term of the forward can hide."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * (0.5 / math.sqrt(p[0].numel()) if p.dim() > 1 else 0.2) + ('weight' in name
                    and p.dim() == 1))
    return model


@pytest.mark.parametrize('shift_size,size', [(5, (61, 45)), (3, (64, 64)), (7, (33, 70))])
def test_forward_equals_official_restatement(shift_size, size):
    depths = (1, 2, 2, 1)
    kwargs = dict(embed_dim=16, depths=depths, shift_size=shift_size, num_classes=7)
    model = randomised(timm.create_model('asmlp_tiny', **kwargs)).eval()
    img = torch.randn(2, 3, *size)
    sd = model.state_dict()
    with torch.no_grad():
        stages, logits = official_forward(img, sd, depths, shift_size)
        torch.testing.assert_close(model(img), logits, rtol=1e-4, atol=1e-4)
        inter = model.forward_intermediates(img, intermediates_only=True)
        features = timm.create_model('asmlp_tiny', features_only=True, **kwargs).eval()
        features.load_state_dict(randomised(features).state_dict() | {k: v for k, v in sd.items() if k in
                                 features.state_dict()})
        feats = features(img)
    fsd = features.state_dict()
    for i, (mine, theirs, ref) in enumerate(zip(feats, inter, stages)):
        torch.testing.assert_close(theirs, ref, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(mine, gn(ref, fsd, f'norm{i}'), rtol=1e-4, atol=1e-4)
        expected = tuple(math.ceil(math.ceil(side / 4) / 2 ** i) for side in size)
        assert mine.shape[-2:] == expected


def test_backward_reaches_every_parameter():
    model = timm.create_model('asmlp_tiny', embed_dim=8, depths=(1, 1, 1, 1), num_classes=3, drop_path_rate=0.)
    model(torch.randn(2, 3, 32, 40)).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize('bad,match', [
    (torch.randn(3, 32), 'NCHW'), (torch.randn(1, 1, 32, 32), 'input channels'), (torch.randn(1, 4, 32, 32), '3'),
])
def test_bad_input_is_refused(bad, match):
    model = timm.create_model('asmlp_tiny', embed_dim=8, depths=(1, 1, 1, 1))
    features = timm.create_model('asmlp_tiny', embed_dim=8, depths=(1, 1, 1, 1), features_only=True)
    for net in (model, features):
        with pytest.raises(ValueError, match=match):
            net(bad)


def test_pretrained_without_weights_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv('ASMLP_WEIGHTS_DIR', str(tmp_path))
    monkeypatch.setenv('ASMLP_CACHE_DIR', str(tmp_path / 'cache'))
    with pytest.raises(FileNotFoundError, match='asmlp_tiny_patch4_shift5_224.pth.*OneDrive.*asmlp download'):
        timm.create_model('asmlp_tiny', pretrained=True)


@pytest.mark.parametrize('fmt', ['pth', 'safetensors', 'downloaded'])
def test_pretrained_loads_an_official_file_from_weights_dir(tmp_path, monkeypatch, fmt):
    monkeypatch.setenv('ASMLP_WEIGHTS_DIR', str(tmp_path))
    monkeypatch.setenv('ASMLP_CACHE_DIR', str(tmp_path / 'cache'))
    kwargs = dict(embed_dim=8, depths=(1, 1, 1, 1))
    source = randomised(timm.create_model('asmlp_tiny', **kwargs))
    weights = {k: v.clone() for k, v in source.state_dict().items()}
    path = tmp_path / f'asmlp_tiny_patch4_shift5_224.{fmt}'
    if fmt == 'downloaded':  # where `python -m asmlp download` keeps the official file
        path = tmp_path / 'cache' / 'downloads' / 'asmlp_tiny_patch4_shift5_224.pth'
        path.parent.mkdir(parents=True)
        fmt = 'pth'
    if fmt == 'pth':  # the official training checkpoint format (utils.save_checkpoint)
        torch.save({'model': weights, 'epoch': 299, 'max_accuracy': 81.3}, path)
    else:
        safetensors.torch.save_file(weights, path)
    model = timm.create_model('asmlp_tiny', pretrained=True, **kwargs)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())
    features = timm.create_model('asmlp_tiny', pretrained=True, features_only=True, **kwargs)
    assert torch.equal(features.state_dict()['layers.3.blocks.0.mlp.fc2.weight'],
                       weights['layers.3.blocks.0.mlp.fc2.weight'])


def test_output_memory_format_follows_the_input():
    kwargs = dict(embed_dim=8, depths=(1, 1, 1, 1))
    features = randomised(timm.create_model('asmlp_tiny', features_only=True, **kwargs)).eval()
    x = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        nchw = features(x)
        nhwc = features(x.contiguous(memory_format=torch.channels_last))
    for a, b in zip(nchw, nhwc):
        assert a.is_contiguous() and b.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
