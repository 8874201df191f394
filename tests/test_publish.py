"""``python -m asmlp publish DIR --repo USER/REPO``: folder checks, the model card, the upload (HfApi intercepted).

The folder is a tiny AS-MLP UperNet (a zoo entry added for the test, with AS-MLP-B's published numbers and weight
sources) written by the converter's own writer; the Hub endpoint is a loopback server that only answers the
reachability probe, and ``HfApi.create_repo`` / ``HfApi.upload_folder`` are replaced by recorders.
"""
from __future__ import annotations

import argparse
import copy
import fnmatch
import hashlib
import http.server
import json
import threading
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import pytest
import torch

import asmlp
from asmlp import zoo
from asmlp.convert import write_converted
from asmlp.hub import net
from asmlp.hub.publish import PublishError, publish_folder
from test_hub import tiny_entry as hub_tiny_entry

TINY = 'tiny_publish_upernet_asmlp'


def tiny_entry(table: dict) -> dict:
    """test_hub's tiny AS-MLP UperNet, with AS-MLP-B's real weight sources (the Hub repo a publish targets)."""
    return {**hub_tiny_entry(table), 'weights': copy.deepcopy(table['upernet_asmlp_base']['weights'])}


class AnsweringServer:
    """Answers every request with 200 (enough for the reachability probe)."""

    def __init__(self):
        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self.send_response(200)
                self.send_header('Content-Length', '0')
                self.end_headers()

            do_GET = do_HEAD

        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.server.server_address[1]}'
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub(monkeypatch, tmp_path):
    table = {**zoo._table(), TINY: tiny_entry(zoo._table())}
    monkeypatch.setattr(zoo, '_table', lambda: table)
    monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
    monkeypatch.delenv('ASMLP_OFFLINE', raising=False)
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', False)
    server = AnsweringServer()
    monkeypatch.setenv('HF_ENDPOINT', server.url)
    net.reset()
    uploads = []

    def create_repo(self, repo_id, *, repo_type=None, exist_ok=False, private=None, **kwargs):
        uploads.append(('create_repo', repo_id, repo_type, exist_ok, private, self.endpoint))
        return f'{self.endpoint}/{repo_id}'

    def upload_folder(self, *, repo_id, folder_path, repo_type=None, allow_patterns=None, commit_message=None,
                      **kwargs):
        files = sorted(p.name for p in Path(folder_path).iterdir()
                       if p.is_file() and any(fnmatch.fnmatch(p.name, pat) for pat in allow_patterns or ['*']))
        uploads.append(('upload_folder', repo_id, files, commit_message,
                        {name: (Path(folder_path) / name).read_bytes() for name in files}))
        return SimpleNamespace(commit_url=f'{self.endpoint}/{repo_id}/commit/{"3" * 40}')

    monkeypatch.setattr(huggingface_hub.HfApi, 'create_repo', create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, 'upload_folder', upload_folder)
    yield SimpleNamespace(uploads=uploads, url=server.url, table=table)
    server.close()
    net.reset()


def converted_folder(folder: Path, kind: str = 'ade20k', source_format: str = 'asmlp-mmseg-upernet') -> Path:
    torch.manual_seed(0)
    model = asmlp.create_segmenter(TINY)
    info = {'model': TINY, 'source_format': source_format, 'source_sha256': 'cd' * 32, 'converter_version': 1,
            'kind': kind}
    write_converted(model, info, folder)
    (folder / 'notes.txt').write_text('not uploaded')
    return folder


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    asmlp.hub.register_cli(parser.add_subparsers(dest='command'))
    args = parser.parse_args(argv)
    return args.func(args)


def test_publish_uploads_the_folder_with_a_model_card(hub, tmp_path, capsys):
    folder = converted_folder(tmp_path / 'out')
    assert run_cli(['publish', str(folder), '--repo', f'me/{TINY}']) == 0
    (create, upload) = hub.uploads
    assert create == ('create_repo', f'me/{TINY}', 'model', True, False, hub.url)
    _, repo, files, message, contents = upload
    assert repo == f'me/{TINY}' and files == ['README.md', 'config.json', 'model.safetensors']
    assert TINY in message and 'asmlp-mmseg-upernet' in message
    assert json.loads(contents['config.json'])['model'] == TINY
    card = contents['README.md'].decode()
    assert card == (folder / 'README.md').read_text()
    published = hub.table['upernet_asmlp_base']['published']
    # paper, licence, source, numbers from the zoo's `published` entry and those reported for these weights
    assert 'AS-MLP: An Axial Shifted MLP Architecture for Vision' in card and 'arxiv.org/abs/2107.08391' in card
    assert 'Unified Perceptual Parsing for Scene Understanding' in card  # UperNet
    assert 'license: mit' in card and 'MIT (svip-lab/AS-MLP LICENSE)' in card
    assert 'https://github.com/svip-lab/AS-MLP-Semantic-Segmentation' in card and '`asmlp-mmseg-upernet`' in card
    assert 'cd' * 32 in card and hashlib.sha256((folder / 'model.safetensors').read_bytes()).hexdigest() in card
    assert f'| {published["gmacs"]} |' in card and f'| {published["miou_ms"]} |' in card
    assert published['source'] in card and '121M' in card
    assert 'these weights' in card and 'AS-MLP-Semantic-Segmentation README' in card
    assert f'asmlp.load_pretrained("{TINY}")' in card
    out = capsys.readouterr().out
    assert 'commit/' in out and 'ASMLP_HUB_NAMESPACE=me' in out


def test_imagenet_backbone_card_says_the_head_is_untrained(hub, tmp_path):
    folder = converted_folder(tmp_path / 'out', kind='imagenet-backbone', source_format='asmlp-imagenet')
    result = publish_folder(folder, f'me/{TINY}', dry_run=True)
    assert result.url is None and hub.uploads == []
    assert 'ImageNet backbone only' in result.card and 'untrained' in result.card
    assert 'https://github.com/svip-lab/AS-MLP' in result.card  # the ImageNet source's page


def test_dry_run_writes_the_card_and_uploads_nothing(hub, tmp_path, capsys):
    folder = converted_folder(tmp_path / 'out')
    assert run_cli(['publish', str(folder), '--repo', 'me/other-name', '--dry-run']) == 0
    assert hub.uploads == [] and (folder / 'README.md').is_file()
    assert 'dry run' in capsys.readouterr().out


def test_a_folder_that_does_not_fit_its_model_is_not_uploaded(hub, tmp_path, capsys):
    from safetensors.torch import save_file
    folder = converted_folder(tmp_path / 'out')
    save_file({'backbone.patch_embed.proj.weight': torch.zeros(3)}, str(folder / 'model.safetensors'))
    assert run_cli(['publish', str(folder), '--repo', f'me/{TINY}']) == 1
    assert hub.uploads == [] and 'does not fit the model' in capsys.readouterr().err
    with pytest.raises(PublishError, match='no model.safetensors'):
        publish_folder(tmp_path, f'me/{TINY}')
    with pytest.raises(PublishError, match='user/name'):
        publish_folder(folder, 'no-slash')


def test_publish_needs_the_hub(hub, tmp_path, monkeypatch):
    folder = converted_folder(tmp_path / 'out')
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    with pytest.raises(PublishError, match='HF_HUB_OFFLINE'):
        publish_folder(folder, f'me/{TINY}')
    assert hub.uploads == []
