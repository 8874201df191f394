"""Reading user images safely: size limits checked before decoding, every common mode turned into RGB uint8.

One documented limit: files up to 20 MB and images up to 50 megapixels (and 32,768 px a side) are accepted;
larger declared sizes are refused from the header, before any pixel is decoded. Only PNG, JPEG (and MPO), GIF,
TIFF, WebP and BMP are opened, whatever the extension says: Pillow's other plugins (EPS runs Ghostscript, PSD,
FITS, ...) are never reached. Images above ``max_work_pixels`` (2.1 MP, ``ASMLP_MAX_WORK_PIXELS``) are
downscaled for processing and display (JPEGs already while decoding, at 1/2, 1/4 or 1/8 scale): masks are
computed at the working size. At most ``ASMLP_DECODE_CONCURRENCY`` (2) uploads are decoded at the same time, so
concurrent uploads cannot multiply the decoding memory. EXIF orientation is applied, animations give their first
frame, and 16-bit, float, palette, grayscale, CMYK and alpha images become RGB (alpha composited over white).
Whatever a damaged or hostile file makes the decoders raise becomes an :class:`ImageInputError` with a message
for people.
"""
from __future__ import annotations

import math
import os
import threading
import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .limits import Limits
from .errors import first_line

MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 50_000_000
MAX_SIDE = 32_768  # a 1 x 32M-pixel PNG of 58 bytes would otherwise cost ~1 GB to decode and resize
FORMATS = ('PNG', 'JPEG', 'MPO', 'GIF', 'TIFF', 'WEBP', 'BMP')
Image.init()  # registers every plugin: Image.open(formats=...) looks the names up in the registry
FORMATS = tuple(f for f in FORMATS if f in Image.OPEN)  # a Pillow built without WebP: the others still work
_LIMITS = Limits.from_env()
_DECODE_SLOTS = threading.BoundedSemaphore(_LIMITS.decode_concurrency)


class ImageInputError(ValueError):
    """An upload that cannot be used, with a message meant for the person who sent it."""


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    mode: str
    format: str | None
    frames: int
    working_size: Optional[tuple[int, int]] = None  # (width, height) when downscaled for processing

    def describe(self) -> str:
        extra = f', first of {self.frames} frames' if self.frames > 1 else ''
        scaled = (f', processed at {self.working_size[0]}x{self.working_size[1]}' if self.working_size else '')
        return f'{self.width}x{self.height} {self.format or "image"} ({self.mode}{extra}{scaled})'


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ('I;16', 'I;16B', 'I;16L', 'I;16N', 'I', 'F'):
        a = np.asarray(im, dtype=np.float32)
        finite = np.isfinite(a)
        lo, hi = (float(a[finite].min()), float(a[finite].max())) if finite.any() else (0.0, 0.0)
        scaled = (np.where(finite, a, lo) - lo) * (255 / (hi - lo)) if hi > lo else np.zeros_like(a)
        im = Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), 'L')
    if im.mode == 'P':
        im = im.convert('RGBA')
    if im.mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La'):
        rgba = im.convert('RGBA')
        background = Image.new('RGBA', rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, rgba)
    return im.convert('RGB')


def _fit(im: Image.Image, max_pixels: int) -> Image.Image:
    """``im`` downscaled (aspect kept) to at most ``max_pixels``; unchanged when it fits."""
    width, height = im.size
    if width * height <= max_pixels:
        return im
    factor = math.sqrt(max_pixels / (width * height))
    new_w, new_h = max(1, math.floor(width * factor)), max(1, math.floor(height * factor))
    new_w, new_h = min(new_w, max(1, max_pixels // new_h)), min(new_h, max(1, max_pixels // new_w))  # 1-px sides
    return im.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=3.0)


def _count_frames(im: Image.Image) -> int:
    try:
        return max(1, int(getattr(im, 'n_frames', 1)))
    except Exception:  # noqa: BLE001  (a damaged frame table: the first frame may still be fine)
        return 1


def load_image(path: str | os.PathLike, max_work_pixels: Optional[int] = None) -> tuple[np.ndarray, ImageInfo]:
    """HxWx3 uint8 RGB array of the image at ``path`` and what it was; ``ImageInputError`` when it cannot be used.

    ``max_work_pixels`` (default ``ASMLP_MAX_WORK_PIXELS``, 2.1 MP): larger images come back downscaled to it
    (``info.working_size``); ``info.width`` / ``info.height`` stay the file's."""
    max_work = _LIMITS.max_work_pixels if max_work_pixels is None else max(1, int(max_work_pixels))
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise ImageInputError(f'cannot read the upload: {e.strerror or e}') from None
    except (TypeError, ValueError):
        raise ImageInputError('the upload has no usable file path') from None
    if size == 0:
        raise ImageInputError('the file is empty (0 bytes)')
    if size > MAX_FILE_BYTES:
        raise ImageInputError(f'the file is {size / 2**20:.1f} MB; uploads up to {MAX_FILE_BYTES // 2**20} MB are '
                              f'accepted')
    with _DECODE_SLOTS:
        return _decode(path, max_work)


def _decode(path, max_work: int) -> tuple[np.ndarray, ImageInfo]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # 'Truncated File Read' and the like: the outcome is what counts
            warnings.simplefilter('error', Image.DecompressionBombWarning)
            im = Image.open(path, formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageInputError(f'the image declares more than {MAX_PIXELS / 1e6:.0f} megapixels; refused') from None
    except UnidentifiedImageError:
        raise ImageInputError('not an image this app can read (PNG, JPEG, GIF, TIFF, WebP or BMP)') from None
    except MemoryError:
        raise ImageInputError('the image needs more memory to open than this app allows') from None
    except Exception as e:  # noqa: BLE001  (OSError, SyntaxError, struct.error, ...: hostile or damaged headers)
        raise ImageInputError(f'the image is damaged or truncated ({_reason(e)})') from None
    with im, warnings.catch_warnings():
        width, height = im.size
        if width < 1 or height < 1:
            raise ImageInputError(f'the image has no pixels ({width}x{height})')
        if width * height > MAX_PIXELS:
            raise ImageInputError(f'the image is {width}x{height} = {width * height / 1e6:.0f} megapixels; up to '
                                  f'{MAX_PIXELS / 1e6:.0f} megapixels are accepted')
        if max(width, height) > MAX_SIDE:
            raise ImageInputError(f'the image is {width}x{height}; sides up to {MAX_SIDE} px are accepted')
        try:
            warnings.simplefilter('ignore')  # 'possibly corrupt EXIF' and the like: the outcome is what counts
            info = ImageInfo(width, height, im.mode, im.format, _count_frames(im))
            im.seek(0)
            if im.format in ('JPEG', 'MPO') and width * height > max_work:
                factor = math.sqrt(max_work / (width * height))
                im.draft('RGB', (math.ceil(width * factor), math.ceil(height * factor)))  # decode at 1/2..1/8
            im.load()
            work = _fit(im, max_work)
            work = ImageOps.exif_transpose(work) or work
            rgb = np.asarray(_to_rgb(work))
        except MemoryError:
            raise ImageInputError('the image needs more memory to decode than this app allows') from None
        except Exception as e:  # noqa: BLE001  (whatever a damaged or hostile file makes a decoder raise)
            raise ImageInputError(f'the image is damaged or truncated ({_reason(e)})') from None
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ImageInputError(f'the image could not be turned into RGB (got shape {rgb.shape})')
    if rgb.shape[0] * rgb.shape[1] != width * height:
        info = ImageInfo(info.width, info.height, info.mode, info.format, info.frames, (rgb.shape[1], rgb.shape[0]))
    return np.ascontiguousarray(rgb, dtype=np.uint8), info


def _reason(error: BaseException) -> str:
    text = first_line(error, 120) if str(error).strip() else ''
    return f'{type(error).__name__}: {text}' if text else type(error).__name__
