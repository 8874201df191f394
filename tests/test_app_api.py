"""The app through its API (gradio_client), as an API client or the page uses it: compare works, every bad-input
class gets a clear message, and the server keeps serving."""
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip('gradio_client')
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from asmlp.precision import cpu_bf16_supported  # noqa: E402

REPO_EXAMPLE = 'assets/examples/coffee.jpg'
MODELS = ['upernet_asmlp_tiny', 'setr_pup_vit_small']


@pytest.fixture(scope='module')
def client(app_url):
    return Client(app_url, verbose=False)


def compare(client, path, models=MODELS, short_side=128):
    return client.predict(handle_file(str(path)), models, 'cpu', 'auto', short_side, 0.5, api_name='/compare')


def test_api_lists_compare(client):
    assert '/compare' in client.view_api(return_format='dict', print_info=False)['named_endpoints']


@pytest.mark.cpu_precision
def test_compare_returns_masks_status_legend_and_disagreement(client):
    status, masks, overlays, legend, disagreement, text = compare(client, REPO_EXAMPLE)
    assert f"cpu, {'bf16' if cpu_bf16_supported() else 'fp32'}," in status  # precision 'auto' on this CPU
    assert len(masks) == len(overlays) == 2
    assert all(m['image'].endswith('.png') for m in masks)  # lossless masks (gr.Image defaults to lossy WebP)
    mask = np.asarray(Image.open(masks[0]['image']).convert('RGB'))
    assert mask.shape == (400, 600, 3)  # back at the image's size
    for name in ('AS-MLP-T', 'ViT-S'):
        assert name in status
    assert 'untrained' in status or 'weights' in status  # every panel states its weights honestly
    assert '%' in legend and disagreement and 'pixels' in text


def png_header_only(width, height):
    ihdr = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)

    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', zlib.compress(b'\x00' * 10))


def image_bytes(mode, size=(40, 30), fmt='PNG', **kwargs):
    rng = np.random.default_rng(0)
    if mode == 'I;16':
        im = Image.fromarray(rng.integers(0, 65535, size[::-1]).astype(np.uint16))
    else:
        im = Image.fromarray(rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def exif_rotated():
    exif = Image.Exif()
    exif[274] = 6
    return image_bytes('RGB', (60, 20), 'JPEG', exif=exif)


def animated_gif():
    frames = [Image.new('RGB', (24, 24), c) for c in ('red', 'blue')]
    buf = io.BytesIO()
    frames[0].save(buf, 'GIF', save_all=True, append_images=frames[1:])
    return buf.getvalue()


WORKS = {
    'rgba.png': lambda: image_bytes('RGBA'), 'palette.png': lambda: image_bytes('P'),
    'gray.png': lambda: image_bytes('L'), 'cmyk.jpg': lambda: image_bytes('CMYK', fmt='JPEG'),
    'sixteen_bit.png': lambda: image_bytes('I;16'), 'exif.jpg': exif_rotated, 'animated.gif': animated_gif,
    'tiny.png': lambda: image_bytes('RGB', (1, 1)), 'wide.png': lambda: image_bytes('RGB', (3000, 2)),
    'webp.webp': lambda: image_bytes('RGB', fmt='WEBP'),
}
REFUSED = {
    'empty.png': (lambda: b'', 'empty'),
    'text.png': (lambda: b'this is not an image at all', 'not an image'),
    'corrupt.jpg': (lambda: image_bytes('RGB', (64, 64), 'JPEG')[:200], 'damaged|truncated'),
    'huge.png': (lambda: png_header_only(100_000, 100_000), 'megapixels'),
    'bomb.png': (lambda: png_header_only(60_000, 60_000), 'megapixels'),
    'big.png': (lambda: png_header_only(8_000, 8_000), 'megapixels'),
    'page.jpg': (lambda: b'<!DOCTYPE html><html><body>Sign in</body></html>', 'not an image'),
    'drawing.svg': (lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><rect width="9" height="9"/>'
                            b'</svg>', 'not an image'),
    'truncated.png': (lambda: image_bytes('RGB', (64, 64))[:300], 'damaged|truncated'),
}


def assert_no_traceback(server_log):
    """An expected user error leaves at most one line in the server log, never a traceback."""
    text = server_log.new()
    assert 'Traceback' not in text and len(text.strip().splitlines()) <= 1, text[-3000:]


@pytest.mark.parametrize('name', sorted(WORKS))
def test_unusual_images_work(client, tmp_path, name):
    path = tmp_path / name
    path.write_bytes(WORKS[name]())
    status, masks, *_ = compare(client, path, models=['upernet_asmlp_tiny'])
    assert len(masks) == 1 and 'Image:' in status


@pytest.mark.parametrize('name', sorted(REFUSED))
def test_bad_files_get_a_clear_message(client, tmp_path, name, server_log):
    make, message = REFUSED[name]
    path = tmp_path / name
    path.write_bytes(make())
    with pytest.raises(AppError, match=message):
        compare(client, path, models=['upernet_asmlp_tiny'])
    assert_no_traceback(server_log)


@pytest.mark.parametrize('models,message', [
    (['../../etc/passwd'], 'not in the list of choices'), ([], 'at least one model'),
])
def test_bad_model_names(client, models, message, server_log):
    with pytest.raises(AppError, match=message):
        compare(client, REPO_EXAMPLE, models=models)
    assert_no_traceback(server_log)


@pytest.mark.parametrize('device,precision,short_side,message', [
    ('tpu', 'auto', 128, 'not in the list of choices'), ('cpu', 'fp64', 128, 'not in the list of choices'),
    ('cpu', 'fp16', 128, 'GPU only'), ('cpu', 'auto', 5000, 'maximum'),
])
def test_bad_arguments_get_a_clear_message(client, device, precision, short_side, message, server_log):
    with pytest.raises(AppError, match=message):
        client.predict(handle_file(REPO_EXAMPLE), ['upernet_asmlp_tiny'], device, precision, short_side, 0.5,
                       api_name='/compare')
    assert_no_traceback(server_log)


def test_measure_before_compare_is_refused_quietly(client, server_log):
    fresh = Client(client.src, verbose=False)  # a new session: nothing segmented yet
    with pytest.raises(AppError, match='Segment an image first'):
        fresh.predict('cpu', 'auto', 128, 1, api_name='/measure')
    assert_no_traceback(server_log)


def test_server_still_serves_after_bad_input(client):
    status, masks, *_ = compare(client, REPO_EXAMPLE, models=['upernet_asmlp_tiny'])
    assert len(masks) == 1
