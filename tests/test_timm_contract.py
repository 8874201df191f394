"""timm's model contract for every registered AS-MLP, as timm's own ``tests/test_models.py`` checks it.

The checks restate those of timm's tests (huggingface/pytorch-image-models, tests/test_models.py) that apply to a
convolutional classifier with NCHW features: forward (+ grad checkpointing gives the same outputs), backward (every
parameter gets a gradient), default cfgs (feature / pooled shapes against ``pool_size``, ``reset_classifier``,
``num_classes=0, global_pool=''``, classifier and first-conv names), features_only and forward_intermediates (channels
and reductions of ``feature_info``), FX tracing (timm's notrace registrations; outputs bit-equal) forward and
backward, pretrained tags and loading with ``in_chans`` / ``num_classes`` changes. Not applicable: TorchScript (timm
deprecates it; AS-MLP's stages are a Python generator) and the ``test_*`` tiny-model inference test (timm's own
models). Inputs are smaller than timm's (64x64; the shapes at 224 are checked on the meta device) to keep CPU time
low (backward: 32x32): AS-MLP takes any input size.
"""
import math

import pytest
import timm
import torch
from timm.models import get_notrace_functions, get_notrace_modules
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

import asmlp  # noqa: F401  (registers the models)
from asmlp.models.asmlp import official_checkpoint_name

MODELS = timm.list_models('asmlp*')
# the deeper variants' training-graph checks are heavier on 2 cores: slow-marked (still run in CI)
HEAVY = [name if name == 'asmlp_tiny' else pytest.param(name, marks=pytest.mark.slow) for name in MODELS]
SIZE = (64, 64)
TRACER_KWARGS = dict(leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions(),
                     param_shapes_constant=True)


def test_registry_and_pretrained_tags():
    assert MODELS == ['asmlp_base', 'asmlp_small', 'asmlp_tiny']
    assert timm.list_pretrained('asmlp*') == [f'{name}.in1k' for name in MODELS]
    for name in MODELS:
        cfg = timm.get_pretrained_cfg(f'{name}.in1k').to_dict()
        assert cfg['file'] == official_checkpoint_name(name) == f'{name}_patch4_shift5_224.pth'
        assert cfg['num_classes'] == 1000 and cfg['input_size'] == (3, 224, 224)


def randn(*shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize('name', MODELS)
def test_forward_and_grad_checkpointing(name):
    model = timm.create_model(name).eval()
    x = randn(1, 3, *SIZE)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (1, 1000) and not out.isnan().any()
        model.set_grad_checkpointing()
        torch.testing.assert_close(model(x), out, rtol=1e-4, atol=1e-5)
        final, intermediates = model.forward_intermediates(x)
        torch.testing.assert_close(final, model.forward_features(x), rtol=1e-4, atol=1e-5)
    assert len(intermediates) == len(model.feature_info)


@pytest.mark.parametrize('name', HEAVY)
def test_backward_reaches_every_parameter_with_checkpointing(name):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=42, drop_path_rate=0.).train()
    x = randn(2, 3, 32, 32)
    model(x).mean().backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters()}
    assert all(g is not None for g in plain.values())
    model.zero_grad()
    model.set_grad_checkpointing()
    out = model(x)
    out.mean().backward()
    assert out.shape == (2, 42)
    for n, p in model.named_parameters():  # recomputed activations: the same gradients
        torch.testing.assert_close(p.grad, plain[n], rtol=1e-4, atol=1e-6, msg=n)


@pytest.mark.parametrize('name', MODELS)
def test_default_cfg_shapes_and_classifier_reset(name):
    """At the cfg's own input size, on the meta device (shapes only, no arithmetic)."""
    with torch.device('meta'):
        model = timm.create_model(name).eval()
        cfg = model.pretrained_cfg
        x = torch.empty(1, *cfg['input_size'])
        feats = model.forward_features(x)
        assert feats.shape[1:] == (model.num_features, *cfg['pool_size'])
        pre = model.forward_head(feats, pre_logits=True)
        assert pre.shape == (1, model.head_hidden_size)
        model.reset_classifier(0)
        assert model.num_classes == 0 and model(x).shape == pre.shape
        model.reset_classifier(0, '')
        assert model(x).shape == feats.shape
        bare = timm.create_model(name, num_classes=0, global_pool='').eval()
        assert bare(x).shape == feats.shape
        state = timm.create_model(name, num_classes=cfg['num_classes']).state_dict()
    assert f'{cfg["classifier"]}.weight' in state and f'{cfg["first_conv"]}.weight' in state
    assert model.num_features > 0 and model.head_hidden_size > 0


@pytest.mark.parametrize('name', MODELS)
def test_features_only(name):
    """timm's features test at its feature size (96): channels and reductions of ``feature_info``."""
    x = randn(1, 3, 96, 96)
    for features in (timm.create_model(name, features_only=True).eval(),):
        channels, reductions = features.feature_info.channels(), features.feature_info.reduction()
        assert len(channels) >= 3
        with torch.no_grad():
            outputs = features(x)
        assert len(outputs) == len(channels)
        for c, r, o in zip(channels, reductions, outputs):
            assert o.shape[:2] == (1, c) and not o.isnan().any()
            assert o.shape[2] <= math.ceil(96 / r) + 1 and o.shape[3] <= math.ceil(96 / r) + 1


def fx_model(model, train=False):
    train_nodes, eval_nodes = get_graph_node_names(model, tracer_kwargs=TRACER_KWARGS)
    nodes = [train_nodes[-1]] if train else [eval_nodes[-1]]
    return create_feature_extractor(model, train_return_nodes=[train_nodes[-1]], eval_return_nodes=nodes,
                                    tracer_kwargs=TRACER_KWARGS)


@pytest.mark.parametrize('name', HEAVY)
def test_fx_forward_is_bit_equal_and_backward_reaches_every_parameter(name):
    model = timm.create_model(name).eval()
    x = randn(1, 3, *SIZE)
    with torch.inference_mode():
        out = model(x)
        fx_out, = fx_model(model)(x).values()
    assert torch.equal(fx_out, out)
    model = timm.create_model(name, num_classes=42, drop_path_rate=0.).train()
    traced = fx_model(model, train=True)
    out, = traced(randn(2, 3, *SIZE)).values()
    out.mean().backward()
    assert out.shape == (2, 42)
    assert all(p.grad is not None for p in traced.parameters())
    assert sum(p.numel() for p in traced.parameters()) == sum(p.numel() for p in model.parameters())


def test_fx_feature_extraction_of_a_stage():
    """The issue's call: ``timm.models.create_feature_extractor(model, {'layers.2': 'l2'})``: stage 2 (its blocks,
    then its patch merging), as eager computes it."""
    model = timm.create_model('asmlp_tiny', embed_dim=16, depths=(1, 1, 2, 1)).eval()
    x = randn(1, 3, 64, 96)
    with torch.no_grad():
        l2 = timm.models.create_feature_extractor(model, {'layers.2': 'l2'})(x)['l2']
        stem = model.patch_embed(x)
        expected = model.layers[2](model.layers[1](model.layers[0](stem)))
    torch.testing.assert_close(l2, expected, rtol=1e-5, atol=1e-5)
    assert l2.shape == (1, 128, 2, 3)


@pytest.mark.parametrize('name', MODELS)
def test_pretrained_loads_with_other_in_chans_and_num_classes(name, tmp_path, monkeypatch):
    """timm's ``test_model_load_pretrained``: an official-layout file (random values, a narrow config to keep it
    small) read through the project's resolver, then timm's first-conv adaptation and classifier drop."""
    monkeypatch.setenv('ASMLP_WEIGHTS_DIR', str(tmp_path))
    kwargs = dict(embed_dim=8, depths=(1, 1, 1, 1))
    source = timm.create_model(name, **kwargs)
    torch.save({'model': source.state_dict()}, tmp_path / official_checkpoint_name(name))
    one = timm.create_model(f'{name}.in1k', pretrained=True, in_chans=1, num_classes=5, **kwargs)
    assert one.patch_embed.proj.weight.shape[1] == 1 and one.head.out_features == 5
    torch.testing.assert_close(one.patch_embed.proj.weight, source.patch_embed.proj.weight.sum(1, keepdim=True))
    headless = timm.create_model(name, pretrained=True, num_classes=0, **kwargs)
    assert torch.equal(headless.layers[3].blocks[0].mlp.fc2.weight, source.layers[3].blocks[0].mlp.fc2.weight)
    features = timm.create_model(name, pretrained=True, features_only=True, **kwargs)
    assert len(features.feature_info) == 4
