"""The Instances tab served (an in-process app on a loopback port, its engine's detectors from
:func:`test_instances.detecting_loader`, its ``detect`` handler counted through the one registration that a
deployment wraps): ``/detect`` through gradio_client — COCO RLE masks decode (pycocotools) to the masks drawn on the
panels, boxes inside the image — and the tab in a real browser at 1440x900 — Demo preset, two panels with boxes,
the threshold slider redraws them without a new call of the model handler."""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_util

from test_instances import DEMO_DETECTORS, EXAMPLE, detecting_loader

gradio_client = pytest.importorskip('gradio_client')
from gradio_client import Client, handle_file  # noqa: E402

CHROMIUM = '/usr/bin/chromium'
OUT = Path(__file__).resolve().parent.parent / 'test-output'
VIEWPORT = {'width': 1440, 'height': 900}
FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage']
OPACITY = 0.5  # the panels' mask opacity (asmlp.evaluation.detections.overlay's default)


@pytest.fixture(scope='module')
def served():
    """(url, calls): the app with the detecting demo detectors; ``calls`` lists each call of the registered
    ``detect`` handler (the deployment's wrap sees every model handler, as ZeroGPU's does)."""
    from asmlp.app import Deployment, build_app
    from asmlp.engine import Engine
    calls = []

    def counting(handler):
        if handler.name != 'detect':
            return handler.fn

        @functools.wraps(handler.fn)
        def counted(*args, **kwargs):
            calls.append(args[:2])
            return handler.fn(*args, **kwargs)
        return counted

    engine = Engine(detector_loader=detecting_loader)
    demo = build_app(engine, deployment=Deployment(wrap=counting))
    demo.queue()
    try:
        _, url, _ = demo.launch(server_name='127.0.0.1', prevent_thread_lock=True, quiet=True)
        yield url, calls
    finally:
        demo.close()
        engine.close()


def blended(image: np.ndarray, detections: list[dict]) -> np.ndarray:
    """``image`` with each detection's decoded mask blended in its colour at :data:`OPACITY`, in list order (the
    panels' drawing, restated)."""
    canvas = image.astype(np.float64)
    for d in detections:
        mask = mask_util.decode(dict(d['segmentation'], counts=d['segmentation']['counts'].encode())).astype(bool)
        color = np.array([int(d['color'][i:i + 2], 16) for i in (1, 3, 5)], np.float64)
        canvas[mask] = np.round(canvas[mask] * (1 - OPACITY) + color * OPACITY)
    return canvas.astype(np.uint8)


def decorations(shape, detections: list[dict], margin: int = 4, tag: int = 30) -> np.ndarray:
    """Where boxes and their captions may be drawn: each box's outline +- ``margin`` px, and a band of ``tag`` px
    above and below its top edge from its left edge rightwards (the caption)."""
    height, width = shape[:2]
    region = np.zeros((height, width), bool)
    for d in detections:
        x, y, w, h = d['bbox']
        x1, y1, x2, y2 = int(x), int(y), int(np.ceil(x + w)), int(np.ceil(y + h))
        outer = np.zeros_like(region)
        outer[max(0, y1 - margin):y2 + margin + 1, max(0, x1 - margin):x2 + margin + 1] = True
        inner = np.zeros_like(region)
        inner[y1 + margin:max(y1 + margin, y2 - margin), x1 + margin:max(x1 + margin, x2 - margin)] = True
        region |= outer & ~inner
        region[max(0, y1 - tag):y1 + tag, max(0, x1 - margin):] = True
    return region


def test_detect_returns_rle_masks_that_decode_to_the_drawn_masks(served):
    url, calls = served
    client = Client(url, verbose=False)
    status, panels, data = client.predict(handle_file(str(EXAMPLE)), DEMO_DETECTORS, 'cpu', 'fp32', 0.0,
                                          api_name='/detect')[:3]
    assert 'AS-MLP nano' in status and 'Swin nano' in status and 'published box / mask AP' in status
    image = np.asarray(Image.open(EXAMPLE).convert('RGB'))
    height, width = image.shape[:2]
    assert [d['model'] for d in data] == DEMO_DETECTORS and len(panels) == 2
    # the threshold keeps the best few of each model, so that most of their masks are away from boxes and captions
    threshold = min(sorted((e['score'] for e in d['detections']), reverse=True)[min(3, len(d['detections']) - 1)]
                    for d in data)
    status, panels, data = client.predict(handle_file(str(EXAMPLE)), DEMO_DETECTORS, 'cpu', 'fp32', threshold,
                                          api_name='/detect')[:3]
    checked = 0
    for record, panel in zip(data, panels):
        detections = record['detections']
        assert detections and record['image_size'] == [height, width] and record['score_threshold'] == threshold
        for d in detections:
            x, y, w, h = d['bbox']
            assert 0 <= x and 0 <= y and w >= 0 and h >= 0 and x + w <= width and y + h <= height
            assert d['score'] >= threshold and d['category_id'] in range(1, 91) and isinstance(d['category'], str)
            assert d['segmentation']['size'] == [height, width]
        drawn = np.asarray(Image.open(panel['image']).convert('RGB'))
        away = ~decorations(drawn.shape, detections)
        np.testing.assert_array_equal(drawn[away], blended(image, detections)[away])
        masks = [mask_util.decode(dict(d['segmentation'], counts=d['segmentation']['counts'].encode()))
                 for d in detections]
        checked += int((np.any(masks, axis=0) & away).sum())
    assert checked > 0  # the masks were compared somewhere
    assert len(calls) == 2


playwright = pytest.importorskip('playwright.sync_api')


def in_view(locator) -> bool:
    box = locator.bounding_box()
    return (box is not None and box['x'] >= 0 and box['y'] >= 0 and box['x'] + box['width'] <= VIEWPORT['width']
            and box['y'] + box['height'] <= VIEWPORT['height'])


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f'{CHROMIUM} not installed (apt-get install chromium)')
def test_the_instances_tab_redraws_on_the_threshold_without_running_a_model(served):
    from playwright.sync_api import expect, sync_playwright
    url, calls = served
    OUT.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(url, wait_until='load')
            page.get_by_role('tab', name='Instances').click()
            page.locator('#detect').wait_for(timeout=60_000)
            page.locator('#instances-preset label', has_text='Cascade').click()
            expect(page.locator('#detectors .token').filter(has_text='Cascade')).to_have_count(2)
            page.locator('#instances-preset label', has_text='Demo (offline)').click()
            tokens = page.locator('#detectors .token')
            expect(tokens).to_have_count(2)
            expect(tokens.filter(has_text='nano')).to_have_count(2)
            for element in ('#instances-image', '#instances-preset', '#detect', '#instance-panels'):
                assert in_view(page.locator(element)), element
            page.locator('#instances-image input[type=file]').set_input_files(str(EXAMPLE))
            before = len(calls)
            page.locator('#detect').click()
            panels = page.locator('#instance-panels img')
            expect(panels).to_have_count(2, timeout=240_000)
            expect(page.locator('#instances-status')).to_contain_text('Swin nano')
            assert len(calls) == before + 1
            assert page.evaluate('window.scrollY') == 0 and in_view(page.locator('#detect')) and in_view(panels.first)
            page.screenshot(path=str(OUT / 'instances.png'))
            first = panels.first.get_attribute('src')
            threshold = page.locator('#score-threshold input[type=number]')
            threshold.fill('0.95')
            threshold.press('Enter')
            expect(panels.first).not_to_have_attribute('src', first, timeout=60_000)  # redrawn: fewer boxes
            expect(page.locator('#instance-panels')).to_contain_text('at score >= 0.95')
            page.screenshot(path=str(OUT / 'instances_threshold.png'))
            assert len(calls) == before + 1  # no new request to the model handler
        finally:
            browser.close()
