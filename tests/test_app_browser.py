"""The app in a real browser (Debian's chromium driven by Playwright) at 1440x900: the answer one glance from the
button (the Segment button and the first mask panel in the first viewport), upload, run two models, see both masks,
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


VIEWPORT = {'width': 1440, 'height': 900}


@pytest.fixture(scope='module')
def app_page(app_url):
    OUT.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(app_url, wait_until='load')
        page.locator('#run').wait_for(timeout=60_000)
        yield page
        browser.close()


def chosen(page, picker='#models'):
    """The chosen entries of a multiselect picker (its tokens)."""
    return page.locator(f'{picker} .token')


def in_view(page, locator) -> bool:
    box = locator.bounding_box()
    return (box is not None and box['x'] >= 0 and box['y'] >= 0 and box['x'] + box['width'] <= VIEWPORT['width']
            and box['y'] + box['height'] <= VIEWPORT['height'])


def test_the_answer_is_one_glance_from_the_button(app_page):
    """At 1440x900, unscrolled: the image, the preset, the model picker and the Segment button are in view, the
    settings are closed, the empty tables show nothing (no placeholder header); after Segment the first mask panel
    is in view too."""
    page = app_page
    assert page.evaluate('window.scrollY') == 0
    for element in ('#input-image', '#preset', '#models', '#run', '#masks'):
        assert in_view(page, page.locator(element)), (element, page.locator(element).bounding_box())
    expect(page.locator('#device')).to_be_hidden()  # inside the closed "Settings" accordion
    expect(page.locator('#settings')).to_contain_text('Settings')
    expect(page.locator('#metrics-table')).to_be_hidden()
    expect(page.locator('#classify-table')).to_be_hidden()
    page.locator('#preset label', has_text='Demo (offline)').click()
    expect(chosen(page)).to_have_count(3)
    page.locator('#input-image input[type=file]').set_input_files(EXAMPLE)
    page.locator('#run').click()
    expect(page.locator('#masks img')).to_have_count(3, timeout=240_000)
    expect(page.locator('#status')).not_to_contain_text('Running the other')
    page.screenshot(path=str(OUT / 'first_view.png'))
    assert page.evaluate('window.scrollY') == 0
    assert in_view(page, page.locator('#run'))
    first = page.locator('#masks img').first
    assert in_view(page, first), first.bounding_box()


def test_compare_two_models(app_page):
    page = app_page
    page.locator('#input-image input[type=file]').set_input_files(EXAMPLE)
    chosen(page).filter(has_text='SETR').locator('.token-remove').click()  # three -> two models
    expect(chosen(page)).to_have_count(2)
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
    table = page.locator('#metrics-table')
    expect(table).to_contain_text('upernet_asmlp_', timeout=240_000)
    expect(table).to_contain_text('upernet_swin_')
    expect(table).to_contain_text('latency ms')  # its own header, shown with the rows
    page.screenshot(path=str(OUT / 'metrics.png'), full_page=True)


def test_demo_preset_gives_three_masks(app_page):
    page = app_page
    page.get_by_role('tab', name='Compare').click()
    page.locator('#preset label', has_text='Tiny').click()  # away and back: the preset sets the model list
    expect(chosen(page)).to_have_count(3)
    expect(chosen(page).filter(has_text='AS-MLP-T ·')).to_have_count(1)
    page.locator('#preset label', has_text='Demo (offline)').click()
    expect(chosen(page)).to_have_count(3)
    for title in ('AS-MLP nano', 'Swin nano', 'SETR-PUP (ViT nano'):
        expect(chosen(page).filter(has_text=title)).to_contain_text('demo weights')
    expect(page.locator('#preset-note')).to_contain_text('generated scenes')
    # every entry says what its weights are before anything loads, in family and size order
    page.locator('#models input').click()
    options = page.locator('[role=option]')
    expect(options.filter(has_text='AS-MLP-B · ')).to_contain_text('ADE20K, downloaded on request')
    expect(options.filter(has_text='SETR-PUP (ViT-S/16')).to_contain_text('untrained')
    labels = [options.nth(i).get_attribute('aria-label') for i in range(options.count())]
    assert [label.split(' ')[0].split('-')[0] for label in labels[:4]] == ['AS'] * 4  # AS-MLP first, nano to base
    page.keyboard.press('Escape')
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
    expect(chosen(page, '#classifiers')).to_have_count(3)  # AS-MLP-T, Swin-T, DeiT-S
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
