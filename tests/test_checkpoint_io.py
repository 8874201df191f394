"""Safe checkpoint reading: training checkpoints with config objects load, malicious pickles are refused without
running, unreadable files fail with one clear line, and no ``torch.load`` in the package runs without
``weights_only=True``."""
import argparse
import ast
import collections
import contextlib
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from asmlp import checkpoint_io
from asmlp.checkpoint_io import CheckpointError, load_checkpoint, refusal_reason, sha256_file

PACKAGE = Path(__file__).resolve().parent.parent / 'asmlp'


@contextlib.contextmanager
def throwaway_module(name: str, **attrs):
    """Register a module (and its parents) in sys.modules while saving a pickle; removed afterwards, so the loader
    cannot import it."""
    parts = name.split('.')
    added = []
    for i in range(1, len(parts) + 1):
        mod_name = '.'.join(parts[:i])
        if mod_name not in sys.modules:
            sys.modules[mod_name] = types.ModuleType(mod_name)
            added.append(mod_name)
    module = sys.modules[name]
    saved = {key: value.__module__ for key, value in attrs.items()}
    for key, value in attrs.items():
        value.__module__ = name
        setattr(module, key, value)
    try:
        yield module
    finally:
        for key, value in attrs.items():
            value.__module__ = saved[key]
        for mod_name in added:
            del sys.modules[mod_name]


class CfgNode(dict):
    """Like yacs.config.CfgNode: a dict subclass with attributes in its __dict__ (pickled by NEWOBJ + SETITEMS)."""

    def __init__(self, init=None):
        super().__init__(init or {})
        self.__dict__['__immutable__'] = False
        self.__dict__['__deprecated_keys__'] = set()
        self.__dict__['__renamed_keys__'] = {}


def asmlp_training_checkpoint(weights: dict) -> dict:
    """What svip-lab/AS-MLP's utils.save_checkpoint writes: weights under 'model' plus optimizer, scheduler,
    amp state and the yacs config (here from a module the loader cannot import)."""
    param = torch.nn.Parameter(torch.randn(4))
    optimizer = torch.optim.AdamW([param], lr=1e-3)
    param.grad = torch.randn(4)
    optimizer.step()
    config = CfgNode({'MODEL': CfgNode({'TYPE': 'asmlp', 'NAME': 'asmlp_tiny_patch4_shift5_224',
                                        'AS': CfgNode({'DEPTHS': [2, 2, 6, 2], 'SHIFT_SIZE': 5})}),
                      'TRAIN': CfgNode({'BASE_LR': 5e-4, 'EPOCHS': 300})})
    return {'model': weights, 'optimizer': optimizer.state_dict(),
            'lr_scheduler': {'t_initial': 300, 'lr_min': 5e-6, 'noise_range_t': None},
            'max_accuracy': 81.3, 'epoch': 299, 'config': config, 'amp': {'loss_scaler0': {'loss_scale': 65536.0}}}


def weights(n=3):
    return {f'layers.{i}.blocks.0.mlp.fc1.weight': torch.randn(8, 4, 1, 1) for i in range(n)}


def test_asmlp_training_checkpoint_with_config_object_loads_the_weights(tmp_path):
    w = weights()
    path = tmp_path / 'asmlp_tiny_patch4_shift5_224.pth'
    with throwaway_module('fake_yacs_for_test.config', CfgNode=CfgNode):
        torch.save(asmlp_training_checkpoint(w), path)
    assert 'fake_yacs_for_test' not in sys.modules
    assert 'fake_yacs_for_test.config.CfgNode' in torch.serialization.get_unsafe_globals_in_checkpoint(path)

    loaded = load_checkpoint(path)
    assert set(loaded) == set(w)
    for k in w:
        assert torch.equal(loaded[k], w[k]) and loaded[k].device.type == 'cpu'
    assert 'fake_yacs_for_test' not in sys.modules  # the stand-in never imported it


def test_config_objects_become_inert_data(tmp_path):
    path = tmp_path / 'ckpt.pth'
    with throwaway_module('fake_yacs_for_test.config', CfgNode=CfgNode):
        torch.save(asmlp_training_checkpoint(weights(1)), path)
    obj = checkpoint_io._load_torch_zip(path)
    config = obj['config']
    assert type(config) is collections.OrderedDict  # plain data, not the (unimportable) class
    assert config['MODEL']['AS']['DEPTHS'] == [2, 2, 6, 2] and config['TRAIN']['EPOCHS'] == 300


def test_mmcv_meta_with_numpy_scalars_namespace_and_defaultdict(tmp_path):
    """mmcv's runner writes meta (strings, tuples, numpy values); other scripts save argparse / defaultdicts."""
    w = {'backbone.patch_embed.proj.weight': torch.randn(4, 3, 4, 4), 'decode_head.conv_seg.bias': torch.randn(5)}
    checkpoint = {
        'meta': {'mmcv_version': '1.3.0', 'time': 'Mon May 31 11:25:42 2021', 'CLASSES': ('wall', 'building'),
                 'PALETTE': [[120, 120, 120], [180, 120, 120]], 'iter': 160000,
                 'hook_msgs': {'best_score': np.float64(0.4441), 'best_iter': np.int64(144000)},
                 'histogram': np.arange(6, dtype=np.float32).reshape(2, 3)},
        'state_dict': collections.OrderedDict(w),
        'args': argparse.Namespace(lr=6e-5, work_dir='work_dirs/x'),
        'counts': collections.defaultdict(list, {'a': [1, 2]}),
    }
    path = tmp_path / 'upernet.pth'
    torch.save(checkpoint, path)
    loaded = load_checkpoint(path)
    assert set(loaded) == set(w) and all(torch.equal(loaded[k], w[k]) for k in w)


def test_class_from_an_importable_module_is_never_imported(tmp_path, monkeypatch):
    """A stand-in replaces the class even when its module could be imported: importing would run module code."""
    module_dir = tmp_path / 'mods'
    module_dir.mkdir()
    marker = tmp_path / 'imported.marker'
    (module_dir / 'sideeffect_cfg.py').write_text(
        f'import pathlib\npathlib.Path({str(marker)!r}).write_text("imported")\n'
        'class Config:\n    def __init__(self):\n        self.depth = 2\n')
    monkeypatch.syspath_prepend(str(module_dir))
    import sideeffect_cfg
    path = tmp_path / 'ckpt.pth'
    torch.save({'state_dict': {'w': torch.ones(2)}, 'cfg': sideeffect_cfg.Config()}, path)
    marker.unlink()
    monkeypatch.delitem(sys.modules, 'sideeffect_cfg')

    assert torch.equal(load_checkpoint(path)['w'], torch.ones(2))
    assert not marker.exists() and 'sideeffect_cfg' not in sys.modules


class _RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


class _Execs:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return exec, (f'open({str(self.marker)!r}, "w").write("pwned")',)


class _Evals:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return eval, (f'open({str(self.marker)!r}, "w")',)


@pytest.mark.parametrize('payload,global_name', [
    (_RunsShell, f'{os.system.__module__}.system'),  # posix.system on Linux
    (_Execs, 'builtins.exec'),
    (_Evals, 'builtins.eval'),
])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, payload, global_name):
    marker = tmp_path / 'pwned.marker'
    path = tmp_path / 'evil.pth'
    torch.save({'model': {'w': torch.zeros(2)}, 'config': payload(marker)}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert global_name in message and str(path) in message and '\n' not in message
    assert not marker.exists()


def test_functions_of_harmless_looking_modules_are_refused(tmp_path):
    import functools
    path = tmp_path / 'partial.pth'
    torch.save({'model': {'w': torch.zeros(1)}, 'f': functools.partial(print, 'x')}, path)
    with pytest.raises(CheckpointError, match='functools.partial'):
        load_checkpoint(path)


@pytest.mark.parametrize('name,refused', [
    ('yacs.config.CfgNode', False), ('argparse.Namespace', False), ('mmcv.utils.config.ConfigDict', False),
    ('numpy.core.multiarray.scalar', False), ('numpy._core.multiarray._reconstruct', False),
    ('numpy.dtype', False), ('numpy.float64', False), ('collections.OrderedDict', False),
    ('__main__.TrainArgs', False), ('datetime.datetime', False), ('builtins.frozenset', False),
    ('torch.torch_version.TorchVersion', False), ('omegaconf.dictconfig.DictConfig', False),
    ('builtins.exec', True), ('builtins.eval', True), ('builtins.getattr', True), ('builtins.__import__', True),
    ('os.system', True), ('posix.system', True), ('subprocess.Popen', True), ('shutil.rmtree', True),
    ('importlib.import_module', True), ('socket.socket', True), ('pickle.loads', True), ('runpy.run_path', True),
    ('ctypes.CDLL', True), ('sys.modules', True), ('torch.load', True), ('torch.nn.modules.conv.Conv2d', True),
    ('numpy.load', True), ('numpy.testing._private.utils.runstring', True), ('operator.attrgetter', True),
    ('functools.partial', True), ('some_pkg.helpers.make_model', True), ('pkg.Cls.__reduce__', True),
])
def test_refusal_classification(name, refused):
    assert (refusal_reason(name) is not None) == refused


def test_truncated_file(tmp_path):
    path = tmp_path / 'model.pth'
    torch.save({'state_dict': {'w': torch.randn(64, 64)}}, path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match=r'model\.pth: truncated or corrupt') as info:
        load_checkpoint(path)
    assert '\n' not in str(info.value)


def test_corrupt_safetensors(tmp_path):
    from safetensors.torch import save_file
    path = tmp_path / 'model.safetensors'
    save_file({'w': torch.randn(8, 8)}, path)
    data = bytearray(path.read_bytes())
    data[8:12] = b'\xff\xfe[x'  # break the JSON header
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r'model\.safetensors: not a readable safetensors file'):
        load_checkpoint(path)
    path.write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"w": {"dtype"')  # header longer than the file
    with pytest.raises(CheckpointError, match='not a readable safetensors file'):
        load_checkpoint(path)


def test_safetensors_file_loads(tmp_path):
    from safetensors.torch import save_file
    w = {'a': torch.randn(3, 2), 'b': torch.arange(4)}
    path = tmp_path / 'model.safetensors'
    save_file(w, path)
    loaded = load_checkpoint(path)
    assert set(loaded) == set(w) and all(torch.equal(loaded[k], w[k]) for k in w)


@pytest.mark.parametrize('name', ['empty.pth', 'empty.safetensors'])
def test_empty_file(tmp_path, name):
    path = tmp_path / name
    path.touch()
    with pytest.raises(CheckpointError, match=rf'{name}: empty file'):
        load_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match='nope.pth: no such file'):
        load_checkpoint(tmp_path / 'nope.pth')


def test_pth_without_tensors(tmp_path):
    path = tmp_path / 'meta_only.pth'
    torch.save({'meta': {'epoch': 3}, 'state_dict': {}, 'config': 'x'}, path)
    with pytest.raises(CheckpointError, match=r'meta_only\.pth: holds no tensors'):
        load_checkpoint(path)


def test_legacy_pickle_format_is_refused(tmp_path):
    path = tmp_path / 'legacy.pth'
    torch.save({'state_dict': {'w': torch.ones(2)}}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match=r'legacy\.pth: legacy \(pre-zip\)'):
        load_checkpoint(path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / 'notes.pth'
    path.write_text('just text\n')
    with pytest.raises(CheckpointError, match='neither a torch.save zip file nor a safetensors file'):
        load_checkpoint(path)


@pytest.mark.parametrize('wrapper', ['state_dict', 'model', 'module', None])
def test_weights_under_the_usual_keys(tmp_path, wrapper):
    w = {'x.weight': torch.randn(2, 2), 'x.bias': torch.randn(2)}
    payload = dict(w) if wrapper is None else {wrapper: w, 'meta': {'note': 'n'}, 'epoch': 1}
    path = tmp_path / 'c.pth'
    torch.save(payload, path)
    loaded = load_checkpoint(path)
    assert set(loaded) == set(w) and all(torch.equal(loaded[k], w[k]) for k in w)


def test_sha256_file(tmp_path):
    import hashlib
    path = tmp_path / 'f.bin'
    data = os.urandom(3 << 20)
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def _torch_load_calls(tree: ast.AST):
    """Calls of torch.load / torch.serialization.load, or of a bare ``load`` imported from torch(.serialization)."""
    imported_load = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ('torch', 'torch.serialization'):
            imported_load |= {a.asname or a.name for a in node.names if a.name == 'load'}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == 'load':
            base = ast.unparse(func.value)
            if base in ('torch', 'torch.serialization', 'serialization'):
                yield node
        elif isinstance(func, ast.Name) and func.id in imported_load:
            yield node


def test_every_torch_load_in_the_package_passes_weights_only_true():
    calls = []
    for path in sorted(PACKAGE.rglob('*.py')):
        tree = ast.parse(path.read_text(), filename=str(path))
        for call in _torch_load_calls(tree):
            safe = any(kw.arg == 'weights_only' and isinstance(kw.value, ast.Constant) and kw.value.value is True
                       for kw in call.keywords)
            calls.append((f'{path.relative_to(PACKAGE.parent)}:{call.lineno}', safe))
    assert any(name.startswith('asmlp/checkpoint_io.py') for name, _ in calls)  # the checker sees real calls
    assert [name for name, safe in calls if not safe] == []


def test_ast_checker_flags_an_unsafe_call():
    bad = ast.parse('import torch\nfrom torch import load as L\n'
                    'torch.load(p)\ntorch.load(p, weights_only=False)\nL(p, weights_only=flag)\n'
                    'torch.load(p, map_location="cpu", weights_only=True)\n')
    calls = list(_torch_load_calls(bad))
    flags = [any(kw.arg == 'weights_only' and isinstance(kw.value, ast.Constant) and kw.value.value is True
                 for kw in c.keywords) for c in calls]
    assert flags == [False, False, False, True]
