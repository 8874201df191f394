"""``python -m asmlp export-space`` / ``push-space``: the Space folder for cpu-basic and ZeroGPU, its front matter and
requirements against what Hugging Face documents for that hardware, the exported app starting from the folder,
its code under Python 3.10 and 3.12, and the push (HfApi intercepted, the Hub a loopback stand-in)."""
from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from asmlp import zoo
from asmlp.__main__ import main as cli
from asmlp.bench.app import start_app, stop_app
from asmlp.hub import net
from asmlp.space.export import export_space, preload_from_hub
from test_publish import AnsweringServer

REPO = Path(__file__).resolve().parent.parent
# hub-docs docs/hub/spaces-zerogpu.md (HEAD 242f4a1): the versions ZeroGPU supports
ZERO_GPU_PYTHON = ('3.10.13', '3.12.12')
ZERO_GPU_TORCH = ('2.8.0', '2.9.1', '2.10.0', '2.11.0')
TORCHVISION_FOR = {'2.8.0': '0.23.0', '2.9.1': '0.24.1', '2.10.0': '0.25.0', '2.11.0': '0.26.0'}  # PyTorch's pairs
PYENV = Path('/root/.pyenv/versions')


def read_front_matter(folder: Path) -> dict:
    match = re.match(r'---\n(.*?)\n---\n', (folder / 'README.md').read_text(), re.S)
    assert match, 'the Space README must start with YAML front matter'
    return yaml.safe_load(match.group(1))


def read_requirements(path: Path) -> dict[str, Requirement]:
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith('#')]
    return {canonicalize_name(Requirement(line).name): Requirement(line) for line in lines}


def pinned(requirement: Requirement) -> str | None:
    specs = list(requirement.specifier)
    assert len(specs) <= 1 and all(s.operator == '==' for s in specs), requirement
    return specs[0].version if specs else None


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    return {hardware: export_space(tmp_path_factory.mktemp(hardware) / 'space', hardware).folder
            for hardware in ('cpu-basic', 'zero-gpu')}


@pytest.mark.parametrize('hardware', ['cpu-basic', 'zero-gpu'])
def test_the_folder_holds_the_app_and_nothing_else(exported, hardware):
    folder = exported[hardware]
    files = {p.relative_to(folder).as_posix() for p in folder.rglob('*') if p.is_file()}
    assert {'app.py', 'asmlp/ui.py', 'asmlp/data/zoo.json', 'asmlp/data/space.json', 'requirements.txt',
            'README.md', 'assets/examples/LICENSES.md'} <= files
    for name in ('upernet_asmlp_nano', 'upernet_swin_nano', 'setr_pup_vit_nano'):
        assert f'weights/demo/{name}/model.safetensors' in files and f'weights/demo/{name}/config.json' in files
    assert not any('__pycache__' in f or f.endswith('.pyc') or f.startswith('tests/') for f in files)
    assert {f.split('/')[1] for f in files if f.startswith('weights/')} == {'demo'}
    assert (folder / 'asmlp/ui.py').read_bytes() == (REPO / 'asmlp/ui.py').read_bytes()


def test_cpu_basic_front_matter_and_requirements(exported):
    import gradio
    folder = exported['cpu-basic']
    meta = read_front_matter(folder)
    assert meta['sdk'] == 'gradio' and meta['app_file'] == 'app.py' and meta['sdk_version'] == gradio.__version__
    assert re.fullmatch(r'3\.\d+(\.\d+)?', str(meta['python_version']))
    assert 'preload_from_hub' not in meta  # the demo models ship in the folder
    # cpu-basic keeps the repository's pins: the versions the test suite runs on
    ours, local = read_requirements(folder / 'requirements.txt'), read_requirements(REPO / 'requirements.txt')
    assert {n: pinned(r) for n, r in ours.items()} == {n: pinned(r) for n, r in local.items()}
    assert pinned(ours['gradio']) == meta['sdk_version']


def test_zero_gpu_front_matter_and_requirements_name_supported_versions(exported):
    folder = exported['zero-gpu']
    meta = read_front_matter(folder)
    assert meta['sdk'] == 'gradio' and meta['app_file'] == 'app.py'
    python = str(meta['python_version'])
    assert any(v == python or v.startswith(python + '.') for v in ZERO_GPU_PYTHON), python
    requirements = read_requirements(folder / 'requirements.txt')
    torch_version = pinned(requirements['torch'])
    assert torch_version in ZERO_GPU_TORCH
    assert pinned(requirements['torchvision']) == TORCHVISION_FOR[torch_version]
    assert pinned(requirements['spaces']) is None  # the platform installs its own
    assert pinned(requirements['gradio']) == meta['sdk_version'] and int(meta['sdk_version'].split('.')[0]) >= 4
    assert {'timm', 'huggingface-hub', 'safetensors', 'plotly', 'opencv-python-headless'} <= set(requirements)
    assert '# ' in (folder / 'requirements.txt').read_text().splitlines()[1]  # the reasons, as comments
    # the repository's own README front matter stays the cpu-basic one
    assert read_front_matter(REPO)['python_version'] == read_front_matter(exported['cpu-basic'])['python_version']


def test_preload_from_hub_names_the_hub_files_of_the_preselected_models(monkeypatch):
    """The base preset (ZeroGPU's) given Hub sources: one item per repo and revision, by ref while unpinned, by
    commit once pinned, nothing for `main`; the first Hub source of a model only (the resolver's first choice)."""
    table = json.loads(json.dumps(zoo._table()))
    table['upernet_swin_base']['weights'] = [
        {'type': 'hub', 'repo': 'me/upernet_swin_base', 'revision': 'refs/pr/3', 'commit': None, 'format': 'native',
         'kind': 'ade20k', 'filename': 'model.safetensors', 'extra_files': ['config.json']},
        {'type': 'hub', 'repo': 'me/other', 'revision': 'main', 'commit': None, 'format': 'native',
         'kind': 'ade20k', 'filename': 'model.safetensors'}]
    table['setr_pup_vit_large']['weights'] = [
        {'type': 'hub', 'repo': 'me/setr', 'revision': 'main', 'commit': 'a' * 40, 'format': 'mmseg-setr',
         'kind': 'ade20k', 'filename': 'setr.pth'}]
    table['upernet_asmlp_base']['weights'] = [
        {'type': 'hub', 'repo': 'me/asmlp', 'revision': 'main', 'commit': None, 'format': 'asmlp-mmseg-upernet',
         'kind': 'ade20k', 'filename': 'asmlp.pth'}]
    monkeypatch.setattr(zoo, '_table', lambda: table)
    assert sorted(preload_from_hub('zero-gpu')) == sorted([
        'me/upernet_swin_base model.safetensors,config.json refs/pr/3', f'me/setr setr.pth {"a" * 40}',
        'me/asmlp asmlp.pth'])
    assert preload_from_hub('cpu-basic') == []  # the demo preset: weights/demo/ is in the folder


@pytest.mark.parametrize('version', ['3.10', '3.12'])
def test_the_exported_code_compiles_under_the_space_pythons(exported, tmp_path, version):
    found = sorted(PYENV.glob(f'{version}.*/bin/python{version}'))
    if not found:
        pytest.skip(f'no Python {version} under {PYENV} (pyenv) on this machine')
    for hardware, folder in exported.items():
        # compiled into a copy's own cache folder: the exported folder stays free of __pycache__
        result = subprocess.run([str(found[-1]), '-c', 'import compileall, sys; sys.exit(not compileall.compile_dir('
                                 'sys.argv[1], quiet=1, legacy=False, workers=1) or not compileall.compile_file('
                                 'sys.argv[2], quiet=1))', str(folder / 'asmlp'), str(folder / 'app.py')],
                                capture_output=True, text=True, env={'PYTHONPYCACHEPREFIX': str(tmp_path / 'pyc'),
                                                                     'PATH': '/usr/bin:/bin'})
        assert result.returncode == 0, f'{hardware} under {found[-1]}:\n{result.stdout}\n{result.stderr}'


def test_a_folder_that_is_not_an_export_is_refused(tmp_path, capsys):
    (tmp_path / 'notes.txt').write_text('keep me')
    assert cli(['export-space', str(tmp_path)]) == 1
    assert 'not empty' in capsys.readouterr().err and (tmp_path / 'notes.txt').read_text() == 'keep me'
    assert cli(['export-space', str(REPO / 'asmlp' / 'inside')]) == 1
    assert 'cannot be (inside) what it copies' in capsys.readouterr().err
    assert cli(['push-space', str(tmp_path), '--repo', 'me/space']) == 1
    assert 'not a Space folder' in capsys.readouterr().err


@pytest.mark.slow
def test_the_exported_app_starts_offline_from_its_folder(tmp_path):
    """cpu-basic as a Space sees it (SYSTEM=spaces, no CUDA): served from the folder, the demo preset chosen.
    (No SPACE_ID: with one, gradio starts its Spaces hot-reloader, which needs the real ``spaces`` package.)"""
    folder = export_space(tmp_path / 'space', 'cpu-basic').folder
    presets_file = folder / 'asmlp' / 'data' / 'presets.json'  # marked: the folder's package must be the one served
    presets_file.write_text(presets_file.read_text().replace('Demo (offline)', 'Demo (offline, exported)'))
    proc, url = start_app(tmp_path / 'app.log', extra_env={'SYSTEM': 'spaces'}, cwd=folder)
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200 and 'AS-MLP architecture explorer' in response.read().decode()
        with urllib.request.urlopen(url + 'config', timeout=10) as response:
            config = json.loads(response.read())
        values = {c['props'].get('elem_id'): c['props'].get('value') for c in config['components']}
        assert values['preset'] == 'demo' and 'Demo (offline, exported)' in json.dumps(config)
        assert values['models'] == ['upernet_asmlp_nano', 'upernet_swin_nano', 'setr_pup_vit_nano']
    finally:
        stop_app(proc)
    log = (tmp_path / 'app.log').read_text()
    assert 'Traceback' not in log, log[-3000:]


@pytest.fixture
def hub(monkeypatch):
    monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
    monkeypatch.delenv('ASMLP_OFFLINE', raising=False)
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', False)
    server = AnsweringServer()
    monkeypatch.setenv('HF_ENDPOINT', server.url)
    net.reset()
    calls, refuse = [], []

    def create_repo(self, repo_id, **kwargs):
        calls.append(('create_repo', repo_id, kwargs, self.endpoint))
        return f'{self.endpoint}/spaces/{repo_id}'

    def upload_folder(self, *, repo_id, folder_path, repo_type=None, ignore_patterns=None, commit_message=None,
                      **kwargs):
        root = Path(folder_path)
        files = sorted(p.relative_to(root).as_posix() for p in root.rglob('*') if p.is_file() and not any(
            fnmatch.fnmatch(p.relative_to(root).as_posix(), pat) for pat in ignore_patterns or []))
        calls.append(('upload_folder', repo_id, repo_type, files, commit_message))
        return SimpleNamespace(commit_url=f'{self.endpoint}/spaces/{repo_id}/commit/{"4" * 40}')

    def request_space_hardware(self, repo_id, hardware, **kwargs):
        calls.append(('request_space_hardware', repo_id, str(hardware)))
        if refuse:
            import httpx
            url = f'{self.endpoint}/api/spaces/{repo_id}/hardware'
            raise huggingface_hub.errors.HfHubHTTPError(
                f'402 Client Error: Payment Required for url: {url}\nmore',
                response=httpx.Response(402, request=httpx.Request('POST', url)))

    for fn in (create_repo, upload_folder, request_space_hardware):
        monkeypatch.setattr(huggingface_hub.HfApi, fn.__name__, fn)
    yield SimpleNamespace(calls=calls, refuse=refuse, url=server.url)
    server.close()
    net.reset()


def test_push_uploads_the_folder_and_asks_for_zero_gpu(hub, tmp_path, capsys):
    folder = tmp_path / 'space'
    assert cli(['export-space', str(folder), '--hardware', 'zero-gpu', '--push', 'me/asmlp', '--private']) == 0
    (create, upload, hardware) = hub.calls
    assert create[:2] == ('create_repo', 'me/asmlp') and create[3] == hub.url
    assert create[2]['repo_type'] == 'space' and create[2]['space_sdk'] == 'gradio'
    assert create[2]['exist_ok'] is True and create[2]['private'] is True
    _, repo, repo_type, files, message = upload
    on_disk = sorted(p.relative_to(folder).as_posix() for p in folder.rglob('*') if p.is_file())
    assert repo == 'me/asmlp' and repo_type == 'space' and 'zero-gpu' in message
    assert files == [f for f in on_disk if f != '.asmlp-space.json']
    assert 'weights/demo/upernet_asmlp_nano/model.safetensors' in files and 'asmlp/space/zerogpu.py' in files
    assert hardware == ('request_space_hardware', 'me/asmlp', 'zero-a10g')  # ZeroGPU's Hub flavor name
    out = capsys.readouterr().out
    assert 'commit/' in out and 'hardware zero-a10g requested' in out


def test_a_refused_hardware_request_is_one_line_and_keeps_the_upload(hub, tmp_path, capsys):
    folder = tmp_path / 'space'
    assert cli(['export-space', str(folder)]) == 0
    hub.refuse.append(True)
    assert cli(['push-space', str(folder), '--repo', 'me/asmlp']) == 0
    assert [c[0] for c in hub.calls] == ['create_repo', 'upload_folder', 'request_space_hardware']
    assert hub.calls[2][2] == 'cpu-basic' and hub.calls[0][2]['private'] is False
    captured = capsys.readouterr()
    lines = [line for line in captured.out.splitlines() if 'not granted' in line]
    assert len(lines) == 1 and '402' in lines[0] and 'Space settings' in lines[0]
    assert 'Traceback' not in captured.out + captured.err and 'more' not in lines[0]
