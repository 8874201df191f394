"""Reading user images safely: size limits checked before decoding, every common mode turned into RGB uint8.

One documented limit: files up to 20 MB and images up to 50 megapixels are accepted (and resized for inference);
larger declared sizes are refused from the header, before any pixel is decoded. EXIF orientation is applied,
animations give their first frame, and 16-bit, float, palette, grayscale, CMYK and alpha images become RGB
(alpha composited over white).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 50_000_000


class ImageInputError(ValueError):
    """An upload that cannot be used, with a message meant for the person who sent it."""


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    mode: str
    format: str | None
    frames: int

    def describe(self) -> str:
        extra = f', first of {self.frames} frames' if self.frames > 1 else ''
        return f'{self.width}x{self.height} {self.format or "image"} ({self.mode}{extra})'


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ('I;16', 'I;16B', 'I;16L', 'I;16N', 'I', 'F'):
        a = np.asarray(im, dtype=np.float64)
        lo, hi = np.nanmin(a), np.nanmax(a)
        scaled = (a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)
        im = Image.fromarray(np.nan_to_num(scaled).astype(np.uint8), 'L')
    if im.mode == 'P':
        im = im.convert('RGBA')
    if im.mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La'):
        rgba = im.convert('RGBA')
        background = Image.new('RGBA', rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, rgba)
    return im.convert('RGB')


def load_image(path: str | os.PathLike) -> tuple[np.ndarray, ImageInfo]:
    """HxWx3 uint8 RGB array of the image at ``path`` and what it was; ``ImageInputError`` when it cannot be used."""
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise ImageInputError(f'cannot read the upload: {e.strerror or e}') from None
    if size == 0:
        raise ImageInputError('the file is empty (0 bytes)')
    if size > MAX_FILE_BYTES:
        raise ImageInputError(f'the file is {size / 2**20:.1f} MB; uploads up to {MAX_FILE_BYTES // 2**20} MB are accepted')
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('error', Image.DecompressionBombWarning)
            im = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageInputError(f'the image declares more than {MAX_PIXELS / 1e6:.0f} megapixels; refused') from None
    except UnidentifiedImageError:
        raise ImageInputError('not an image this app can read (PNG, JPEG, GIF, TIFF, WebP or BMP)') from None
    except OSError as e:
        raise ImageInputError(f'the image is damaged or truncated ({e})') from None
    with im:
        width, height = im.size
        if width < 1 or height < 1:
            raise ImageInputError(f'the image has no pixels ({width}x{height})')
        if width * height > MAX_PIXELS:
            raise ImageInputError(f'the image is {width}x{height} = {width * height / 1e6:.0f} megapixels; up to '
                                  f'{MAX_PIXELS / 1e6:.0f} megapixels are accepted')
        info = ImageInfo(width, height, im.mode, im.format, getattr(im, 'n_frames', 1))
        try:
            im.seek(0)
            im.load()
            im = ImageOps.exif_transpose(im) or im
            rgb = np.asarray(_to_rgb(im))
        except (OSError, ValueError, SyntaxError, EOFError) as e:
            raise ImageInputError(f'the image is damaged or truncated ({type(e).__name__})') from None
    return np.ascontiguousarray(rgb, dtype=np.uint8), info
