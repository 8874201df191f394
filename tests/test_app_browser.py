"""The app in a real browser (Debian's chromium driven by Playwright): upload, run two models, see both masks,
the legend and the metrics table, move the opacity slider, and play the axial-shift animation.
Screenshots go to test-output/."""
import os
from pathlib import Path

import pytest

playwright = pytest.importorskip('playwright.sync_api')
CHROMIUM = '/usr/bin/chromium'
if not os.path.exists(CHROMIUM):
    if os.environ.get('CI'):
        raise RuntimeError(f'{CHROMIUM} is missing: .ci/run installs Debian chromium for the browser tests')
    pytest.skip(f'{CHROMIUM} not installed (apt-get install chromium)', allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / 'test-output'
FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage']
EXAMPLE = str(Path(__file__).resolve().parent.parent / 'assets' / 'examples' / 'coffee.jpg')


@pytest.fixture(scope='module')
def app_page(app_url):
    OUT.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={'width': 1400, 'height': 2000})
        page.goto(app_url, wait_until='load')
        page.locator('#run').wait_for(timeout=60_000)
        yield page
        browser.close()


def test_compare_two_models(app_page):
    page = app_page
    page.locator('#input-image input[type=file]').set_input_files(EXAMPLE)
    page.locator('#models label:has(input:checked)', has_text='[setr_').click()  # three defaults -> two models
    checked = page.locator('#models input[type=checkbox]:checked')
    expect(checked).to_have_count(2)
    page.locator('#run').click()
    expect(page.locator('#masks img')).to_have_count(2, timeout=240_000)
    expect(page.locator('#overlays img')).to_have_count(2)
    expect(page.locator('#legend')).to_contain_text('%')
    expect(page.locator('#status')).to_contain_text('AS-MLP')
    expect(page.locator('#disagreement-text')).to_contain_text('pixels')
    page.screenshot(path=str(OUT / 'compare.png'), full_page=True)

    before = page.locator('#overlays img').first.get_attribute('src')
    page.locator('#opacity input[type=number]').fill('0.9')
    page.locator('#opacity input[type=number]').press('Enter')
    expect(page.locator('#overlays img').first).not_to_have_attribute('src', before, timeout=60_000)

    page.locator('#runs input[type=number]').fill('1')
    page.locator('#runs input[type=number]').press('Enter')
    page.locator('#measure').click()
    expect(page.locator('#metrics-table')).to_contain_text('upernet_asmlp_', timeout=240_000)
    expect(page.locator('#metrics-table')).to_contain_text('upernet_swin_')
    page.screenshot(path=str(OUT / 'metrics.png'), full_page=True)


def test_demo_preset_gives_three_masks(app_page):
    page = app_page
    page.get_by_role('tab', name='Compare').click()
    page.locator('#preset label', has_text='Tiny').click()  # away and back: the preset sets the model list
    expect(page.locator('#models input[type=checkbox]:checked')).to_have_count(3)
    expect(page.locator('#models label:has(input:checked)', has_text='[upernet_asmlp_tiny]')).to_have_count(1)
    page.locator('#preset label', has_text='Demo (offline)').click()
    checked = page.locator('#models label:has(input:checked)')
    expect(checked).to_have_count(3)
    for name in ('upernet_asmlp_nano', 'upernet_swin_nano', 'setr_pup_vit_nano'):
        expect(checked.filter(has_text=f'[{name}]')).to_contain_text('demo weights')
    expect(page.locator('#preset-note')).to_contain_text('generated scenes')
    # every entry says what its weights are before anything loads
    expect(page.locator('#models label', has_text='[upernet_asmlp_base]')).to_contain_text('downloadable on request')
    expect(page.locator('#models label', has_text='[setr_pup_vit_small]')).to_contain_text('untrained')
    page.locator('#input-image input[type=file]').set_input_files(EXAMPLE)
    page.locator('#run').click()
    expect(page.locator('#masks img')).to_have_count(3, timeout=240_000)
    expect(page.locator('#status')).to_contain_text('demo weights')
    page.screenshot(path=str(OUT / 'demo_preset.png'), full_page=True)


def test_shift_animation_plays(app_page):
    page = app_page
    page.get_by_role('tab', name='Axial shift').click()
    plot = page.locator('#shift-anim .js-plotly-plot')
    plot.wait_for(timeout=60_000)
    frames = page.evaluate("() => document.querySelector('#shift-anim .js-plotly-plot')._transitionData._frames.length")
    assert frames > 1
    active = "() => document.querySelector('#shift-anim .js-plotly-plot')._fullLayout.sliders[0].active"
    assert page.evaluate(active) == 0
    page.locator('#shift-anim .updatemenu-button').first.click()  # Play
    page.wait_for_function(f'({active})() >= 2', timeout=30_000)
    page.screenshot(path=str(OUT / 'axial_shift.png'), full_page=True)
    page.get_by_role('tab', name='Receptive fields').click()
    page.locator('#rf-anim .js-plotly-plot').wait_for(timeout=60_000)
    page.screenshot(path=str(OUT / 'receptive_fields.png'), full_page=True)


def test_classify_tab_gives_three_top5_lists(app_page):
    page = app_page
    page.get_by_role('tab', name='Classify').click()
    expect(page.locator('#classifiers input[type=checkbox]:checked')).to_have_count(3)  # AS-MLP-T, Swin-T, DeiT-S
    page.locator('#classify-image input[type=file]').set_input_files(EXAMPLE)
    page.locator('#classify').click()
    table = page.locator('#classify-table')
    expect(table).to_contain_text('DeiT-S', timeout=240_000)
    for title in ('rank', 'AS-MLP-T', 'Swin-T'):
        expect(table).to_contain_text(title)
    page.screenshot(path=str(OUT / 'classify.png'), full_page=True)
    assert table.inner_text().count('%') == 15  # three top-5 lists side by side, one probability per cell
    expect(page.locator('#classify-status')).to_contain_text('latency')
    expect(page.locator('#classify-status')).to_contain_text('no weights')
    page.screenshot(path=str(OUT / 'classify.png'), full_page=True)
