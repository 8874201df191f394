"""Progress of a download, for people: what the app's progress bar and the CLI's tqdm bar show.

A download calls ``progress(DownloadProgress)`` as bytes arrive (at most every ``MIN_INTERVAL`` seconds, and once
at the end); :func:`tqdm_callback` draws it as a tqdm bar, :meth:`DownloadProgress.text` as one line (file, MB done /
total, MB/s, ETA) for ``gr.Progress``.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

__all__ = ['DownloadProgress', 'ProgressCallback', 'Throttle', 'tqdm_callback', 'tqdm_class_for']

MIN_INTERVAL = 0.2  # seconds between two reports of one download


@dataclass(frozen=True)
class DownloadProgress:
    filename: str
    done: int                 # bytes received (resumed bytes included)
    total: Optional[int]      # bytes expected (None when the server does not say)
    seconds: float            # since the download started
    finished: bool = False

    @property
    def rate(self) -> float:
        """Bytes per second so far."""
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def fraction(self) -> Optional[float]:
        return min(1.0, self.done / self.total) if self.total else None

    @property
    def eta(self) -> Optional[float]:
        """Seconds left at the rate so far (None when unknown)."""
        if not self.total or self.rate <= 0:
            return None
        return max(0.0, (self.total - self.done) / self.rate)

    def text(self) -> str:
        """``Downloading f.pth: 12.0 / 512.0 MB, 8.1 MB/s, ETA 62 s``."""
        total = f' / {self.total / 1e6:.1f}' if self.total else ''
        eta = f', ETA {self.eta:.0f} s' if self.eta is not None and not self.finished else ''
        verb = 'Downloaded' if self.finished else 'Downloading'
        return f'{verb} {self.filename}: {self.done / 1e6:.1f}{total} MB, {self.rate / 1e6:.1f} MB/s{eta}'


ProgressCallback = Callable[[DownloadProgress], None]


class Throttle:
    """Calls ``callback`` at most every ``MIN_INTERVAL`` s (always for the first and the finished report)."""

    def __init__(self, callback: Optional[ProgressCallback], filename: str):
        self.callback, self.filename = callback, filename
        self.start = time.monotonic()
        self.last = None

    def __call__(self, done: int, total: Optional[int], finished: bool = False) -> None:
        if self.callback is None:
            return
        now = time.monotonic()
        if finished or self.last is None or now - self.last >= MIN_INTERVAL:
            self.last = now
            self.callback(DownloadProgress(self.filename, done, total, now - self.start, finished))


@contextlib.contextmanager
def tqdm_callback(**tqdm_kwargs) -> Iterator[ProgressCallback]:
    """A progress callback drawing one tqdm bar per file (closed at its end, and when the context exits)."""
    from tqdm.auto import tqdm
    bars: dict[str, tqdm] = {}

    def callback(p: DownloadProgress) -> None:
        bar = bars.get(p.filename)
        if bar is None:
            bar = bars[p.filename] = tqdm(total=p.total, desc=p.filename, unit='B', unit_scale=True,
                                          unit_divisor=1024, **tqdm_kwargs)
        if p.total and bar.total != p.total:
            bar.total = p.total
        bar.update(p.done - bar.n)
        if p.finished:
            bar.close()

    try:
        yield callback
    finally:
        for bar in bars.values():
            bar.close()


def tqdm_class_for(callback: Optional[ProgressCallback], filename: str):
    """A tqdm class for ``huggingface_hub.hf_hub_download(tqdm_class=...)`` that also reports to ``callback``."""
    from tqdm.auto import tqdm
    if callback is None:
        return None
    throttle = Throttle(callback, filename)

    class Reporting(tqdm):
        def update(self, n=1):
            shown = super().update(n)
            throttle(int(self.n), int(self.total) if self.total else None)
            return shown

        def close(self):
            if getattr(self, 'total', None) and self.n >= self.total:
                throttle(int(self.n), int(self.total), finished=True)
            super().close()

    return Reporting
