"""``python -m asmlp publish DIR --repo USER/REPO``: put a converted folder on the Hub, with a model card.

``DIR`` is what ``python -m asmlp convert`` writes: ``config.json`` + ``model.safetensors``. Before anything is
uploaded the folder is checked: the config names a zoo model and says where the weights came from, and the
safetensors header fits that model's state_dict (built on the meta device: no memory, no time). A ``README.md``
model card is written into ``DIR`` (paper, licence, source file and its sha256, the zoo's published numbers and
those reported for these exact weights), then ``HfApi.create_repo(exist_ok=True)`` and ``HfApi.upload_folder``
send the three files. Name the repo ``<namespace>/<zoo model name>`` so that ``ASMLP_HUB_NAMESPACE=<namespace>``
finds it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from . import fetch, net
from .native import CONFIG_FILE, NATIVE_KINDS, WEIGHTS_FILE, check_state_dict, read_config
from .sources import WeightSource
from ..errors import first_line

__all__ = ['PublishError', 'Published', 'PAPERS', 'check_folder', 'model_card', 'publish_folder']

CARD_FILE = 'README.md'
UPLOADED = (CONFIG_FILE, WEIGHTS_FILE, CARD_FILE)

PAPERS = {
    'AS-MLP': [('AS-MLP: An Axial Shifted MLP Architecture for Vision', 'Dongze Lian, Zehao Yu, Xing Sun, '
                'Shenghua Gao', 'ICLR 2022', 'https://arxiv.org/abs/2107.08391')],
    'Swin': [('Swin Transformer: Hierarchical Vision Transformer using Shifted Windows', 'Ze Liu, Yutong Lin, Yue '
              'Cao, Han Hu, Yixuan Wei, Zheng Zhang, Stephen Lin, Baining Guo', 'ICCV 2021',
              'https://arxiv.org/abs/2103.14030')],
    'SETR': [('Rethinking Semantic Segmentation from a Sequence-to-Sequence Perspective with Transformers',
              'Sixiao Zheng, Jiachen Lu, Hengshuang Zhao, Xiatian Zhu, Zekun Luo, Yabiao Wang, Yanwei Fu, Jianfeng '
              'Feng, Tao Xiang, Philip H. S. Torr, Li Zhang', 'CVPR 2021', 'https://arxiv.org/abs/2012.15840')],
}
UPERNET = ('Unified Perceptual Parsing for Scene Understanding', 'Tete Xiao, Yingcheng Liu, Bolei Zhou, Yuning '
           'Jiang, Jian Sun', 'ECCV 2018', 'https://arxiv.org/abs/1807.10221')
ORIGIN = {  # where the original weights come from, per format (for the card's "Source" section)
    'asmlp-imagenet': 'https://github.com/svip-lab/AS-MLP',
    'asmlp-mmseg-upernet': 'https://github.com/svip-lab/AS-MLP-Semantic-Segmentation',
    'hf-upernet-swin': 'https://huggingface.co/openmmlab',
    'swin-official-upernet': 'https://github.com/SwinTransformer/Swin-Transformer-Semantic-Segmentation',
    'mmseg-setr': 'https://github.com/open-mmlab/mmsegmentation/tree/main/configs/setr',
}
KIND_TEXT = {
    'ade20k': 'ADE20K semantic segmentation (150 classes), the whole segmenter trained.',
    'imagenet-backbone': 'ImageNet backbone only: the decode and auxiliary heads are untrained (random), so its '
                         'masks are meaningless until the head is trained. Not a pretrained segmenter.',
    'demo': 'Demo weights: not a published model; masks are not representative of the architecture.',
}


class PublishError(ValueError):
    """The folder is not publishable, or the Hub cannot be used."""


@dataclass(frozen=True)
class Published:
    repo: str
    files: tuple[str, ...]
    card: str
    url: Optional[str]       # commit URL (None for a dry run)


def _file_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework='pt') as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as error:  # noqa: BLE001  (bad header, truncated file)
        raise PublishError(f'{path}: not a readable safetensors file ({first_line(error)})') from None


def check_folder(folder: Path) -> dict[str, Any]:
    """The folder's validated config; PublishError naming the problem otherwise."""
    import torch

    from ..zoo import build_segmenter, list_models
    folder = Path(folder)
    if not folder.is_dir():
        raise PublishError(f'{folder}: not a folder')
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise PublishError(f'{folder}: no {WEIGHTS_FILE} (write the folder with `python -m asmlp convert`)')
    try:
        import json
        name = json.loads((folder / CONFIG_FILE).read_text()).get('model')
    except Exception:  # noqa: BLE001
        name = None
    if name not in list_models():
        raise PublishError(f'{folder / CONFIG_FILE}: "model" must name a zoo model, got {name!r}')
    try:
        config = read_config(folder / CONFIG_FILE, name, kinds=NATIVE_KINDS)
        with torch.device('meta'):
            model = build_segmenter(name)
        check_state_dict({k: tuple(v.shape) for k, v in model.state_dict().items()}, _file_shapes(weights),
                         config['kind'], str(weights))
    except PublishError:
        raise
    except ValueError as error:
        raise PublishError(str(error)) from None
    return config


def _matching_source(name: str, config: dict) -> Optional[WeightSource]:
    from .sources import weight_sources
    for source in weight_sources(name):
        if source.format == config.get('source_format'):
            return source
    return None


def _fmt(value, spec: str = '') -> str:
    return '–' if value is None else format(value, spec)


def _yaml_license(text: Optional[str]) -> str:
    low = (text or '').lower()
    return 'mit' if low.startswith('mit') else 'apache-2.0' if low.startswith('apache-2.0') else 'other'


def model_card(config: dict, weights_sha256: str) -> str:
    """The README.md text for a folder with this ``config``."""
    from ..zoo import model_entry
    name, kind = config['model'], config['kind']
    entry = model_entry(name)
    source = _matching_source(name, config)
    papers = list(PAPERS.get(entry.get('family'), []))
    if entry.get('decode_head', {}).get('type') == 'UPerHead':
        papers.append(UPERNET)
    origin = (source.display if source else None) or ORIGIN.get(config['source_format'], 'not recorded')
    licence = source.license if source and source.license else None
    published = entry.get('published', {})
    lines = [
        '---',
        f'license: {_yaml_license(licence)}',
        'library_name: pytorch',
        'pipeline_tag: image-segmentation',
        'tags:', '- semantic-segmentation', '- ade20k', f'- {entry.get("family", "").lower()}', '- asmlp',
        'datasets:', '- scene_parse_150',
        '---', '',
        f'# {entry.get("title", name)} — `{name}`', '',
        f'Weights for the zoo model `{name}` of the AS-MLP architecture explorer (package `asmlp`), in its native '
        f'format: `{WEIGHTS_FILE}` holds the segmenter\'s `state_dict` (mmseg module names), `{CONFIG_FILE}` says '
        f'where it came from.', '',
        f'**What it is:** {KIND_TEXT.get(kind, kind)}', '',
        '## Paper', '',
    ]
    lines += [f'- {title}. {authors}. {venue}. {url}' for title, authors, venue, url in papers] or ['- not recorded']
    lines += ['', '## Licence', '']
    if licence:
        lines.append(f'{licence}. The weights keep the licence of the original checkpoint; see its source below.')
    else:
        where = ORIGIN.get(config['source_format'], origin)
        lines.append(f'Not verified here: the original checkpoint\'s terms apply — see {where}.')
    lines += [
        '', '## Source', '',
        f'- original checkpoint: {origin}',
        *([f'- where it is published: {source.page}'] if source and source.page else []),
        f'- original format: `{config["source_format"]}`, sha256 `{config["source_sha256"]}`',
        f'- converted by `asmlp` converter version {config["converter_version"]}; `{WEIGHTS_FILE}` sha256 '
        f'`{weights_sha256}`',
    ]
    if source and source.note:
        lines.append(f'- note: {source.note}')
    lines += [
        '', '## Published numbers', '',
        'ADE20K val, 512x512 crops; GMACs at 512x2048 (the papers\' "FLOPs"), parameters with auxiliary heads.', '',
        '| | params | GMACs | mIoU (SS) | mIoU (MS+flip) | source |', '|---|---|---|---|---|---|',
        f'| the model (zoo) | {_fmt(published.get("params") and published["params"] / 1e6, ".0f")}M '
        f'| {_fmt(published.get("gmacs"))} | {_fmt(published.get("miou_ss"))} | {_fmt(published.get("miou_ms"))} '
        f'| {published.get("source", "–")} |',
    ]
    if source and source.reported:
        rep = source.reported
        lines.append(f'| these weights | – | – | {_fmt(rep.get("miou_ss"))} | {_fmt(rep.get("miou_ms"))} '
                     f'| {rep.get("source", "–")} |')
    if published.get('note'):
        lines += ['', f'Note: {published["note"]}.']
    if kind != 'ade20k':
        lines += ['', f'These numbers belong to the trained segmenter; these weights are `{kind}` (see above).']
    lines += [
        '', '## Use', '', '```python',
        'import os',
        f'os.environ["ASMLP_HUB_NAMESPACE"] = "<this repo\'s owner>"  # the repo must be named <owner>/{name}',
        'import asmlp',
        f'model, status = asmlp.load_pretrained("{name}")',
        'print(status.message)',
        '```', '',
    ]
    return '\n'.join(lines)


def publish_folder(folder: Path, repo: str, *, private: bool = False, dry_run: bool = False,
                   commit_message: Optional[str] = None, api: Any = None) -> Published:
    """Check ``folder``, write its model card, and (unless ``dry_run``) upload it to the Hub repo ``repo``."""
    from ..checkpoint_io import sha256_file
    folder = Path(folder)
    if repo.count('/') != 1 or not all(repo.split('/')):
        raise PublishError(f'--repo must be "user/name", got {repo!r}')
    config = check_folder(folder)
    card = model_card(config, sha256_file(folder / WEIGHTS_FILE))
    (folder / CARD_FILE).write_text(card)
    if dry_run:
        return Published(repo, UPLOADED, card, None)
    if fetch.offline():
        raise PublishError('publishing needs the Hub: unset HF_HUB_OFFLINE / ASMLP_OFFLINE (or use --dry-run)')
    endpoint = fetch.hub_endpoint()
    if api is None:
        reach = net.check(endpoint)
        if not reach.ok:
            raise PublishError(f'the Hub ({endpoint}) is unreachable: {reach.reason}')
        from huggingface_hub import HfApi
        api = HfApi(endpoint=endpoint)
    api.create_repo(repo, repo_type='model', exist_ok=True, private=private)
    info = api.upload_folder(repo_id=repo, folder_path=str(folder), repo_type='model', allow_patterns=list(UPLOADED),
                             commit_message=commit_message or f'{config["model"]} weights ({config["kind"]}, from '
                                                              f'{config["source_format"]})')
    url = getattr(info, 'commit_url', None) or (str(info) if info is not None else None)
    return Published(repo, UPLOADED, card, url)
