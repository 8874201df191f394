"""Panels as they come, in a real browser: the compare handler shows each model's panel as soon as that model is
done. Proved without timing: the second model blocks on an event until the test has seen the first panel (and no
disagreement view yet); then it is released and every panel and the disagreement view appear."""
import os
import threading
import types
from pathlib import Path

import pytest

playwright = pytest.importorskip('playwright.sync_api')
CHROMIUM = '/usr/bin/chromium'
if not os.path.exists(CHROMIUM):
    pytest.skip(f'{CHROMIUM} not installed (apt-get install chromium)', allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

import asmlp  # noqa: E402
from asmlp.bench.app import launch_in_process  # noqa: E402
from asmlp.limits import Limits  # noqa: E402
from asmlp.engine import Engine  # noqa: E402

from test_app_browser import FLAGS  # noqa: E402

MODELS = ['upernet_asmlp_nano', 'upernet_swin_nano', 'setr_pup_vit_nano']  # the Demo (offline) preset
EXAMPLE = str(Path(__file__).resolve().parent.parent / 'assets' / 'examples' / 'coffee.jpg')


@pytest.fixture
def app(monkeypatch):
    release = threading.Event()

    def loader(name):
        model = asmlp.create_segmenter(name).eval()
        if name == MODELS[1]:  # blocks until the test has seen the first panel
            def wait(module, args):
                release.wait(120)
            model.register_forward_pre_hook(wait)
        return model, types.SimpleNamespace(kind='demo', message=f'test model {name}', pretrained=False)

    engine = Engine(loader=loader, limits=Limits(torch_threads=1))
    demo, url = launch_in_process(engine)
    yield url, release
    release.set()
    demo.close()
    engine.close()


def test_each_panel_appears_when_its_model_is_done(app):
    url, release = app
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={'width': 1400, 'height': 2000})
        page.goto(url, wait_until='load')
        page.locator('#run').wait_for(timeout=60_000)
        page.locator('#preset label', has_text='Demo (offline)').click()
        expect(page.locator('#models .token')).to_have_count(3)
        page.locator('#input-image input[type=file]').set_input_files(EXAMPLE)
        page.locator('#run').click()
        expect(page.locator('#masks img')).to_have_count(1, timeout=120_000)  # the first model's panel, alone
        expect(page.locator('#overlays img')).to_have_count(1)
        expect(page.locator('#status')).to_contain_text('test model upernet_asmlp_nano')
        expect(page.locator('#status')).to_contain_text('Running the other 2 models')
        expect(page.locator('#disagreement-text')).to_contain_text('1 of 3 models done')
        release.set()
        expect(page.locator('#masks img')).to_have_count(3, timeout=120_000)
        expect(page.locator('#disagreement-text')).to_contain_text('pixels get different labels')
        expect(page.locator('#status')).not_to_contain_text('Running the other')
        browser.close()
