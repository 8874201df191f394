"""Hostile input: the upload path (``load_image`` and the preprocessing) fuzzed with malformed PNG / JPEG / GIF /
TIFF / WebP / BMP bytes, polyglots, formats the app does not open, wrong extensions and huge declared sizes; model
names and paths from the UI or API checked against the zoo and the weights folder; checkpoints never unpickled
with code execution.

The fuzz runs in two child processes, so that a crash in a decoder cannot take pytest down and the decoder's
memory is measured alone: ``generate`` draws the inputs with hypothesis (seeded, reproducible) into a folder,
``run`` feeds each one to ``load_image`` and ``preprocess`` under a per-input alarm, counts the outcomes and
samples its RSS (after ``malloc_trim``). Every input must end as an RGB array or an ``ImageInputError``; nothing
may crash, hang or make the RSS grow. CI: 1,000 inputs; ``ASMLP_LONG=1``: 10,000 (``ASMLP_FUZZ_EXAMPLES`` and
``ASMLP_FUZZ_SEED`` override).

    python tests/test_reliability_fuzz.py generate --examples 10000 --seed 8 --out /tmp/fuzz
    python tests/test_reliability_fuzz.py run /tmp/fuzz
"""
from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import re
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LONG = os.environ.get('ASMLP_LONG', '').strip() not in ('', '0')
EXAMPLES = int(os.environ.get('ASMLP_FUZZ_EXAMPLES') or (10_000 if LONG else 1000))
SEED = int(os.environ.get('ASMLP_FUZZ_SEED') or 8)
HANG_SECONDS = 10
EXTENSIONS = ['.png', '.jpg', '.jpeg', '.gif', '.tif', '.tiff', '.webp', '.bmp', '.PNG', '.txt', '.pth', '.svg',
              '.pdf', '', '.exe']


# ------------------------------------------------------------------------------------------------- the corpus

def seeds() -> dict[str, bytes]:
    """Small valid files of every accepted format and mode, files of formats the app must not open, and
    non-image content (pickle, zip, script)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 255, (23, 31, 3), dtype=np.uint8))
    out: dict[str, bytes] = {}

    def save(key, image, fmt, **kwargs):
        buf = io.BytesIO()
        image.save(buf, fmt, **kwargs)
        out[key] = buf.getvalue()

    exif = Image.Exif()
    exif[274] = 6
    frames = [im.rotate(90 * k) for k in range(1, 3)]
    save('png_rgb', im, 'PNG')
    save('png_rgba', im.convert('RGBA'), 'PNG')
    save('png_p', im.convert('P'), 'PNG')
    save('png_la', im.convert('LA'), 'PNG')
    save('png_1', im.convert('1'), 'PNG')
    save('png_i16', Image.fromarray(rng.integers(0, 65535, (23, 31)).astype(np.uint16)), 'PNG')
    save('apng', im, 'PNG', save_all=True, append_images=frames)
    save('jpeg', im, 'JPEG')
    save('jpeg_progressive', im, 'JPEG', progressive=True)
    save('jpeg_cmyk', im.convert('CMYK'), 'JPEG')
    save('jpeg_exif', im, 'JPEG', exif=exif)
    save('jpeg_gray', im.convert('L'), 'JPEG')
    save('gif', im.convert('P'), 'GIF')
    save('gif_anim', im.convert('P'), 'GIF', save_all=True, append_images=[f.convert('P') for f in frames], loop=0)
    save('tiff', im, 'TIFF')
    save('tiff_deflate', im, 'TIFF', compression='tiff_deflate')
    save('tiff_lzw', im, 'TIFF', compression='tiff_lzw')
    save('tiff_jpeg', im, 'TIFF', compression='jpeg')
    save('tiff_float', Image.fromarray(rng.random((23, 31)).astype(np.float32)), 'TIFF')
    save('tiff_multi', im, 'TIFF', save_all=True, append_images=frames)
    save('webp', im, 'WEBP')
    save('webp_lossless', im, 'WEBP', lossless=True)
    save('webp_anim', im, 'WEBP', save_all=True, append_images=frames)
    save('bmp', im, 'BMP')
    save('bmp_p', im.convert('P'), 'BMP')
    save('bmp_1', im.convert('1'), 'BMP')
    # formats Pillow reads but the app must refuse
    save('pdf', im, 'PDF')
    save('ico', im, 'ICO')
    save('tga', im, 'TGA')
    save('ppm', im, 'PPM')
    save('pcx', im, 'PCX')
    out['eps'] = b'%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n(x) run\nshowpage\n'
    out['svg'] = b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><script>alert(1)</script></svg>'
    out['pickle'] = pickle.dumps({'a': 1})
    out['zip'] = b'PK\x03\x04' + b'\0' * 26 + b'data.pkl'
    out['script'] = b'#!/bin/sh\necho pwned\n'
    return out


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))


def png_header(w, h, color=2, depth=8):
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, depth, color, 0, 0, 0)) + \
        chunk(b'IDAT', zlib.compress(b'\0' * 64))


def gif_header(w, h):
    w, h = w & 0xFFFF, h & 0xFFFF
    return (b'GIF89a' + struct.pack('<HHBBB', w, h, 0, 0, 0) + b',' + struct.pack('<HHHHB', 0, 0, w, h, 0)
            + b'\x02\x02\x44\x01\x00;')


def bmp_header(w, h):
    w, h = w & 0x7FFFFFFF, h & 0x7FFFFFFF
    info = struct.pack('<IiiHHIIiiII', 40, w, h, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b'BM' + struct.pack('<IHHI', 54 + 64, 0, 0, 54) + info + b'\0' * 64


def tiff_header(w, h):
    entries = [(256, 4, 1, w & 0xFFFFFFFF), (257, 4, 1, h & 0xFFFFFFFF), (258, 3, 1, 8), (259, 3, 1, 1),
               (262, 3, 1, 1), (273, 4, 1, 8), (277, 3, 1, 1), (278, 4, 1, h & 0xFFFFFFFF), (279, 4, 1, 64)]
    ifd = struct.pack('<H', len(entries)) + b''.join(struct.pack('<HHII', *e) for e in entries) + b'\0\0\0\0'
    return b'II*\x00' + struct.pack('<I', 8 + 64) + b'\0' * 64 + ifd


def jpeg_header(w, h):
    w, h = w & 0xFFFF, h & 0xFFFF
    sof = b'\xff\xc0' + struct.pack('>HBHHB', 17, 8, h, w, 3) + b'\x01\x22\x00\x02\x11\x01\x03\x11\x01'
    return b'\xff\xd8' + sof + b'\xff\xda\x00\x0c\x03\x01\x00\x02\x11\x03\x11\x00\x3f\x00' + b'\x55' * 64 + b'\xff\xd9'


def webp_header(w, h):
    w, h = max(1, w & 0xFFFFFF), max(1, h & 0xFFFFFF)
    vp8x = b'VP8X' + struct.pack('<I', 10) + b'\0\0\0\0' + (w - 1).to_bytes(3, 'little') + \
        (h - 1).to_bytes(3, 'little')
    body = b'WEBP' + vp8x + b'VP8L' + struct.pack('<I', 5) + b'\x2f\0\0\0\0\0'
    return b'RIFF' + struct.pack('<I', len(body)) + body


def fix_png_crcs(data: bytes) -> bytes:
    """Recompute the CRC of every chunk that can be walked (mutations then reach the chunk parsers)."""
    out, at = bytearray(data), 8
    while at + 12 <= len(out):
        length = struct.unpack('>I', out[at:at + 4])[0]
        end = at + 8 + length
        if end + 4 > len(out):
            break
        out[end:end + 4] = struct.pack('>I', zlib.crc32(bytes(out[at + 4:end])))
        at = end + 4
    return bytes(out)


HEADERS = {'png': png_header, 'gif': gif_header, 'bmp': bmp_header, 'tiff': tiff_header, 'jpeg': jpeg_header,
           'webp': webp_header}


def strategy(pool: dict[str, bytes]):
    """Hypothesis strategy of (bytes, extension, inference short side)."""
    from hypothesis import strategies as st

    names = sorted(pool)
    dims = st.one_of(st.sampled_from([0, 1, 2, 255, 256, 7071, 7072, 32768, 32769, 65535, 65536, 2**24,
                                      2**31 - 1, 2**32 - 1]),
                     st.integers(0, 2**32 - 1), st.integers(1, 9000))
    interesting = st.sampled_from([0x00, 0xFF, 0x7F, 0x80, 0x01, 0xFE])

    @st.composite
    def cases(draw):
        kind = draw(st.sampled_from(['mutate'] * 5 + ['header'] * 2 + ['polyglot', 'random', 'seed']))
        if kind == 'random':
            data = draw(st.binary(max_size=1024))
        elif kind == 'seed':
            data = pool[draw(st.sampled_from(names))]
        elif kind == 'header':
            data = HEADERS[draw(st.sampled_from(sorted(HEADERS)))](draw(dims), draw(dims))
            if draw(st.booleans()):
                data += draw(st.binary(max_size=256))
        elif kind == 'polyglot':
            first, second = pool[draw(st.sampled_from(names))], pool[draw(st.sampled_from(names))]
            cut = draw(st.integers(0, len(first)))
            data = draw(st.sampled_from([first + second, first[:cut] + second, second + first[cut:],
                                         b'\0' * draw(st.integers(1, 64)) + first]))
        else:
            data = bytearray(pool[draw(st.sampled_from(names))])
            for _ in range(draw(st.integers(1, 6))):
                if not data:
                    break
                at = draw(st.integers(0, 2**16)) % len(data)
                op = draw(st.sampled_from(['flip', 'byte', 'u16', 'u32', 'truncate', 'insert', 'delete', 'repeat']))
                if op == 'flip':
                    data[at] ^= 1 << draw(st.integers(0, 7))
                elif op == 'byte':
                    data[at] = draw(interesting)
                elif op in ('u16', 'u32'):
                    size = 2 if op == 'u16' else 4
                    value = draw(st.integers(0, 2 ** (8 * size) - 1))
                    data[at:at + size] = value.to_bytes(size, draw(st.sampled_from(['big', 'little'])))
                elif op == 'truncate':
                    del data[at:]
                elif op == 'insert':
                    data[at:at] = draw(st.binary(min_size=1, max_size=64))
                elif op == 'delete':
                    del data[at:at + draw(st.integers(1, 64))]
                else:
                    piece = bytes(data[at:at + draw(st.integers(1, 256))])
                    data[at:at] = piece * draw(st.integers(1, 16))
            data = bytes(data)
            if data.startswith(b'\x89PNG') and draw(st.booleans()):
                data = fix_png_crcs(data)  # past the CRC checks, into the chunk parsers and the decoder
        return bytes(data), draw(st.sampled_from(EXTENSIONS)), draw(st.sampled_from([32, 64, 128, 512, 1024]))

    return cases()


def generate(examples: int, seed: int, out: Path) -> int:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as with_seed

    out.mkdir(parents=True, exist_ok=True)
    cases = []

    @with_seed(seed)
    @settings(max_examples=examples, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy(seeds()))
    def draw(case):
        data, ext, short_side = case
        name = f'{len(cases):05d}{ext}'
        (out / name).write_bytes(data)
        cases.append([name, short_side])

    draw()
    (out / 'cases.json').write_text(json.dumps(cases))
    return len(cases)


# ------------------------------------------------------------------------------------------------- the run

class Hang(Exception):
    pass


def rss(field: str = 'VmRSS', trim: bool = False) -> int:
    """A field of /proc/self/status in bytes; ``trim``: first hand freed heap memory back to the system (glibc
    ``malloc_trim``), so the RSS shows what is still in use, not what the allocator keeps cached."""
    if trim:
        try:
            import ctypes
            ctypes.CDLL('libc.so.6').malloc_trim(0)
        except (OSError, AttributeError):
            pass
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(field + ':'):
            return int(line.split()[1]) * 1024
    return 0


def run(folder: Path) -> dict:
    import numpy as np
    import torch

    from asmlp.image_io import ImageInputError, load_image
    from asmlp.preprocess import preprocess

    torch.set_num_threads(1)
    cases = json.loads((folder / 'cases.json').read_text())

    def alarm(*_):
        raise Hang(f'no answer within {HANG_SECONDS} s')
    signal.signal(signal.SIGALRM, alarm)
    counts = {'decoded': 0, 'refused': 0}
    refusals: dict[str, int] = {}
    failures, slowest, samples = [], (0.0, ''), []
    warm_at = max(1, len(cases) // 10)
    every = max(100, len(cases) // 20)
    start = time.monotonic()
    for i, (name, short_side) in enumerate(cases):
        began = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
        try:
            rgb, info = load_image(folder / name)
            assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.flags.c_contiguous
            x = preprocess(rgb, (4 * short_side, short_side))
            assert x.dtype == torch.float32 and x.shape[:2] == (1, 3) and bool(torch.isfinite(x).all())
            info.describe()
            counts['decoded'] += 1
        except ImageInputError as error:
            counts['refused'] += 1
            reason = re.sub(r'\d+(\.\d+)?', '#', str(error).split('(')[0].strip())[:60]
            refusals[reason] = refusals.get(reason, 0) + 1
        except BaseException as error:  # noqa: BLE001  (everything else is a finding)
            failures.append(dict(input=name, error=f'{type(error).__name__}: {error}'[:300]))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        seconds = time.perf_counter() - began
        if seconds > slowest[0]:
            slowest = (seconds, name)
        if i + 1 == warm_at or (i + 1) % every == 0 or i + 1 == len(cases):
            samples.append((i + 1, rss(trim=True)))
    warm = next(v for n, v in samples if n == warm_at)
    return dict(inputs=len(cases), **counts, failures=failures, refusals=refusals,
                slowest_s=round(slowest[0], 3), slowest_input=slowest[1], wall_s=round(time.monotonic() - start, 1),
                rss_after_warmup_mib=round(warm / 2**20, 1), rss_end_mib=round(samples[-1][1] / 2**20, 1),
                rss_growth_mib=round((samples[-1][1] - warm) / 2**20, 1),
                rss_max_sample_mib=round(max(v for _, v in samples) / 2**20, 1),
                peak_rss_mib=round(rss('VmHWM') / 2**20, 1), rss_samples=samples)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description='fuzz the upload path (see the module docstring)')
    sub = parser.add_subparsers(dest='command', required=True)
    gen = sub.add_parser('generate')
    gen.add_argument('--examples', type=int, default=EXAMPLES)
    gen.add_argument('--seed', type=int, default=SEED)
    gen.add_argument('--out', type=Path, required=True)
    go = sub.add_parser('run')
    go.add_argument('folder', type=Path)
    go.add_argument('--json', type=Path)
    args = parser.parse_args(argv)
    if args.command == 'generate':
        print(generate(args.examples, args.seed, args.out))
        return 0
    result = run(args.folder)
    text = json.dumps(result)
    if args.json:
        args.json.write_text(text)
    print(text)
    return 0 if not result['failures'] else 1


if __name__ == '__main__':
    sys.path.insert(0, str(REPO))
    sys.exit(main())


# ------------------------------------------------------------------------------------------------- the tests

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip('hypothesis')


def child(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONHASHSEED='0')
    return subprocess.run([sys.executable, __file__, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_fuzzed_uploads_never_crash_hang_or_grow_memory(tmp_path):
    corpus = tmp_path / 'corpus'
    made = child('generate', '--examples', str(EXAMPLES), '--seed', str(SEED), '--out', str(corpus),
                 timeout=3600 if LONG else 300)
    assert made.returncode == 0, made.stderr[-3000:]
    assert int(made.stdout.split()[-1]) >= EXAMPLES * 0.95
    out = REPO / 'test-output' / 'reliability'
    out.mkdir(parents=True, exist_ok=True)
    report = out / f'fuzz{"-long" if LONG else ""}.json'
    ran = child('run', str(corpus), '--json', str(report), timeout=7200 if LONG else 300)
    assert ran.returncode in (0, 1), f'the fuzz process died (rc {ran.returncode}):\n{ran.stderr[-3000:]}'
    result = json.loads(report.read_text())
    print('\nfuzz:', json.dumps({k: v for k, v in result.items() if k != 'rss_samples'}))
    assert result['failures'] == [], result['failures'][:10]
    assert result['decoded'] > 0 and result['refused'] > 0
    assert result['slowest_s'] < HANG_SECONDS
    assert result['rss_growth_mib'] < 64, result['rss_samples']
    assert result['peak_rss_mib'] < 2048


# ------------------------------------------------------------------------------------- names, paths, checkpoints

def test_model_names_are_zoo_names_and_cannot_walk_out_of_weights():
    from asmlp.paths import weights_dir
    from asmlp.service import check_model_names
    from asmlp.zoo import list_models
    root = weights_dir().resolve()
    for name in list_models():
        assert check_model_names([name]) == [name]
        for folder in (weights_dir() / name, weights_dir() / 'demo' / name):
            assert root in folder.resolve().parents
    bad = ['../weights', '../../etc/passwd', 'upernet_asmlp_nano/../../x', '/etc/passwd', 'weights/x', 'UPERNET',
           'upernet_asmlp_tiny\x00', 'upernet asmlp', '.', '', 'a' * 500, None, 3, 1.5, b'upernet_asmlp_tiny',
           {'name': 'x'}, ['upernet_asmlp_tiny']]
    for name in bad:
        with pytest.raises(ValueError):
            check_model_names([name])
    with pytest.raises(ValueError):
        check_model_names(42)


class Payload:
    """Pickles to a call of ``os.system`` — what a malicious checkpoint carries."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


def test_checkpoints_with_code_are_never_executed(tmp_path, monkeypatch):
    """A code-carrying pickle where the app looks for weights — an official file name in weights/, a native
    folder, a URL download already in the cache — is refused with a clear status; the code never runs."""
    from asmlp.engine import Engine
    weights, cache = tmp_path / 'weights', tmp_path / 'cache'
    monkeypatch.setenv('ASMLP_WEIGHTS_DIR', str(weights))
    monkeypatch.setenv('ASMLP_CACHE_DIR', str(cache))
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    marker = tmp_path / 'pwned'
    weights.mkdir()
    evil = {'state_dict': {'x': torch.zeros(1)}, 'meta': Payload(marker)}
    torch.save(evil, weights / 'asmlp_tiny_patch4_shift5_224.pth')  # upernet_asmlp_tiny's official backbone file
    (weights / 'upernet_asmlp_nano').mkdir()
    with open(weights / 'upernet_asmlp_nano' / 'model.safetensors', 'wb') as f:
        pickle.dump(Payload(marker), f)
    (weights / 'upernet_asmlp_nano' / 'config.json').write_text(json.dumps(
        {'model': 'upernet_asmlp_nano', 'kind': 'ade20k', 'source_format': 'native', 'converter_version': 1}))
    names = [n for n in ('upernet_asmlp_tiny', 'upernet_asmlp_nano') if n in __import__('asmlp').list_models()]
    image = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    with Engine() as engine:
        results = engine.segment(image, names, 'cpu', 'fp32', 64)
    assert not marker.exists()
    for r in results:
        assert r.status.kind == 'none' and 'unusable weights' in r.status.message, r.status.message
    assert 'posix.system' in results[0].status.message or 'system' in results[0].status.message
