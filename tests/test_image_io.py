"""Uploads: every common image kind becomes RGB uint8; bad files get a clear ImageInputError, never a crash."""
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from asmlp.image_io import MAX_FILE_BYTES, ImageInputError, load_image


def save(tmp_path, name, image, **kwargs):
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


def png_header_only(width, height):
    """A PNG whose IHDR declares width x height, with a tiny (truncated) data stream."""
    ihdr = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', zlib.compress(b'\x00' * 10))


@pytest.mark.parametrize('mode,name', [
    ('RGB', 'a.jpg'), ('RGBA', 'a.png'), ('P', 'a.png'), ('L', 'a.png'), ('CMYK', 'a.jpg'), ('I;16', 'a.png'),
    ('1', 'a.png'), ('LA', 'a.png'), ('RGB', 'a.webp'), ('RGB', 'a.tif'), ('RGB', 'a.bmp'),
])
def test_modes_become_rgb(tmp_path, mode, name):
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 255, (9, 13, 3), dtype=np.uint8))
    im = base.convert(mode) if mode != 'I;16' else Image.fromarray((rng.integers(0, 65535, (9, 13))).astype(np.uint16))
    rgb, info = load_image(save(tmp_path, name, im))
    assert rgb.shape == (9, 13, 3) and rgb.dtype == np.uint8
    assert info.width == 13 and info.height == 9


def test_rgba_is_composited_over_white(tmp_path):
    im = Image.new('RGBA', (4, 4), (255, 0, 0, 0))
    rgb, _ = load_image(save(tmp_path, 'a.png', im))
    assert (rgb == 255).all()


def test_exif_rotation_is_applied(tmp_path):
    im = Image.new('RGB', (30, 10), 'white')
    exif = Image.Exif()
    exif[274] = 6  # rotate 90 degrees clockwise to display
    rgb, _ = load_image(save(tmp_path, 'a.jpg', im, exif=exif))
    assert rgb.shape == (30, 10, 3)


def test_animated_gif_first_frame(tmp_path):
    frames = [Image.new('RGB', (5, 5), c) for c in ('red', 'blue')]
    path = tmp_path / 'a.gif'
    frames[0].save(path, save_all=True, append_images=frames[1:])
    rgb, info = load_image(path)
    assert info.frames == 2 and rgb[0, 0, 0] > 200 and rgb[0, 0, 2] < 50


@pytest.mark.parametrize('size', [(1, 1), (3000, 1), (1, 3000)])
def test_tiny_and_extreme_aspect(tmp_path, size):
    rgb, _ = load_image(save(tmp_path, 'a.png', Image.new('RGB', size)))
    assert rgb.shape == (size[1], size[0], 3)


@pytest.mark.parametrize('content,match', [
    (b'', 'empty'), (b'hello, not an image', 'not an image'), (b'%PDF-1.4 ...', 'not an image'),
    (png_header_only(8000, 8000), 'megapixels'), (png_header_only(100000, 100000), 'megapixels'),
])
def test_bad_files(tmp_path, content, match):
    path = tmp_path / 'upload.png'
    path.write_bytes(content)
    with pytest.raises(ImageInputError, match=match):
        load_image(path)


def test_truncated_jpeg(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, 'JPEG')
    path = tmp_path / 'cut.jpg'
    path.write_bytes(buf.getvalue()[:300])
    with pytest.raises(ImageInputError, match='damaged|truncated|not an image'):
        load_image(path)


def test_file_too_large_is_refused_before_reading(tmp_path):
    path = tmp_path / 'big.png'
    with open(path, 'wb') as f:
        f.write(png_header_only(10, 10))
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: nothing is written
    with pytest.raises(ImageInputError, match='MB'):
        load_image(path)


def test_missing_file(tmp_path):
    with pytest.raises(ImageInputError, match='cannot read'):
        load_image(tmp_path / 'nope.png')
