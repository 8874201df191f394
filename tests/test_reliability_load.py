"""Load: ``python app.py`` on a loopback port, N concurrent ``compare`` requests through gradio_client (N = 4 in
CI, 20 with ``ASMLP_LONG=1``): each one completes with the result of the same request run alone, or is turned away
with the app's own busy message; none fails otherwise or times out; the server's peak RSS (VmHWM) stays <= 6 GiB.
Also: 20 identical compares at once (the app's default limits) are each served in full — every file of the answer
downloads completely, byte for byte the files of the same request run alone — or told "busy", with no cut response
and no traceback in the log (result images are files written once: asmlp/app/files.py); a full app answers "busy"
at once, and files outside the upload folder cannot be named through the API.

CI runs the server with ``ASMLP_MAX_WAITING=1`` (one running + one waiting) so that four requests exercise both
outcomes; the long run uses the app's defaults. Figures go to ``test-output/reliability/load*.json``.
"""
from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip('gradio_client')
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import asmlp  # noqa: E402
from asmlp.bench.app import start_app, stop_app  # noqa: E402
from asmlp.limits import BUSY_MESSAGE  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
LONG = os.environ.get('ASMLP_LONG', '').strip() not in ('', '0')
N_REQUESTS = 20 if LONG else 4
MAX_WAITING = None if LONG else 1  # None: the app's default (asmlp.limits.Limits.max_waiting)
PEAK_RSS_LIMIT = 6 * 2**30
REQUEST_TIMEOUT = 300 if LONG else 180
OUT = REPO / 'test-output' / 'reliability'


def demo_models() -> list[str]:
    """The three nano demo models when the zoo has them, else the lightest T/S models."""
    nano = ['upernet_asmlp_nano', 'upernet_swin_nano', 'setr_pup_vit_nano']
    known = asmlp.list_models()
    return nano if all(n in known for n in nano) else ['upernet_asmlp_tiny', 'setr_pup_vit_small']


MODELS = demo_models()
EXAMPLES = sorted(str(p.relative_to(REPO)) for p in (REPO / 'assets' / 'examples').glob('*.jpg'))
# distinct requests (image, models, short side): a mix-up between concurrent requests would show
VARIANTS = [(EXAMPLES[i % len(EXAMPLES)], MODELS[: 1 + i % len(MODELS)] if i % 2 == 0 else MODELS[i % len(MODELS):],
             128 + 32 * (i % 3)) for i in range(4)]


def vm(pid: int, field: str) -> int:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith(field + ':'):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    log_path = tmp_path_factory.mktemp('load') / 'app.log'
    extra = {'ASMLP_TORCH_THREADS': '1'}
    if MAX_WAITING is not None:
        extra['ASMLP_MAX_WAITING'] = str(MAX_WAITING)
    proc, url = start_app(log_path, extra, timeout=120)
    yield dict(url=url, pid=proc.pid, log=log_path, max_waiting=MAX_WAITING)
    stop_app(proc)
    log = log_path.read_text()
    assert ' failed' not in log, log[-3000:]  # no unexpected handler error
    # busy answers and refused names are not faults: no traceback, except Gradio's own for a request that names a
    # server file instead of uploading one (a probe, refused before any app code runs; RELIABILITY.md)
    tracebacks = log.split('Traceback (most recent call last):')[1:]
    assert all('InvalidPathError' in t and 'it was not uploaded by a user' in t for t in tracebacks), log[-3000:]


def call(client: Client, image: str, models: list[str], short_side: int):
    job = client.submit(handle_file(str(REPO / image)), models, 'cpu', 'fp32', short_side, 0.5, api_name='/compare')
    return job.result(timeout=REQUEST_TIMEOUT)


def masks_of(result) -> list[np.ndarray]:
    return [np.asarray(Image.open(m['image']).convert('RGB')) for m in result[1]]


def signature(result) -> dict:
    """What must not depend on the load: the masks, the legend, the disagreement figure, the weight statuses."""
    status = result[0]
    weights = [line.split('|')[2].strip() for line in status.splitlines() if line.startswith('| **')]
    return dict(masks=masks_of(result), legend=result[3], text=result[5], weights=weights)


def same(a: dict, b: dict) -> bool:
    return (len(a['masks']) == len(b['masks']) and all(np.array_equal(x, y) for x, y in zip(a['masks'], b['masks']))
            and a['legend'] == b['legend'] and a['text'] == b['text'] and a['weights'] == b['weights'])


def test_concurrent_compare_requests_complete_identically_or_get_busy(server):
    reference = {}
    for variant in VARIANTS:
        reference[variant[0], tuple(variant[1]), variant[2]] = signature(call(Client(server['url'], verbose=False),
                                                                              *variant))
    requests = [VARIANTS[i % len(VARIANTS)] for i in range(N_REQUESTS)]
    clients = [Client(server['url'], verbose=False) for _ in requests]
    barrier = threading.Barrier(len(requests))

    def one(i):
        image, models, short_side = requests[i]
        barrier.wait()
        start = time.monotonic()
        try:
            result = call(clients[i], image, models, short_side)
        except AppError as error:
            return ('busy' if str(error) == BUSY_MESSAGE else f'error: {error}'), time.monotonic() - start
        except Exception as error:  # noqa: BLE001  (a timeout, a dropped connection: all failures)
            return f'error: {type(error).__name__}: {error}', time.monotonic() - start
        ok = same(signature(result), reference[image, tuple(models), short_side])
        return ('same' if ok else 'different'), time.monotonic() - start

    started = time.monotonic()
    with ThreadPoolExecutor(len(requests)) as pool:
        outcomes = list(pool.map(one, range(len(requests))))
    wall = time.monotonic() - started
    kinds = [kind for kind, _ in outcomes]
    peak = vm(server['pid'], 'VmHWM')
    figures = dict(
        requests=len(requests), served_identical=kinds.count('same'), busy=kinds.count('busy'),
        failed=[k for k in kinds if k not in ('same', 'busy')], max_waiting=server['max_waiting'] or 'default (8)',
        busy_answer_max_s=round(max([s for k, s in outcomes if k == 'busy'], default=0), 3),
        served_max_s=round(max([s for k, s in outcomes if k == 'same'], default=0), 3), wall_s=round(wall, 1),
        server_peak_rss_gib=round(peak / 2**30, 3), server_rss_gib=round(vm(server['pid'], 'VmRSS') / 2**30, 3),
        models=MODELS, long=LONG)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f'load{"-long" if LONG else ""}.json').write_text(json.dumps(figures, indent=1))
    print('\nload:', json.dumps(figures))
    assert all(kind in ('same', 'busy') for kind in kinds), outcomes
    assert kinds.count('same') >= 1 + (server['max_waiting'] or 0) or kinds.count('busy') == 0, outcomes
    assert peak <= PEAK_RSS_LIMIT, f'server peak RSS {peak / 2**30:.2f} GiB'


def result_files(result) -> list[bytes]:
    """The bytes of every file of a compare answer, as the client downloaded them: masks, overlays, disagreement."""
    paths = [m['image'] for m in result[1]] + [o['image'] for o in result[2]] + [result[4]]
    return [Path(path).read_bytes() for path in paths]


@pytest.fixture(scope='module')
def default_server(tmp_path_factory):
    """``python app.py`` with the app's default limits (one running, eight waiting)."""
    log_path = tmp_path_factory.mktemp('identical') / 'app.log'
    proc, url = start_app(log_path, {'ASMLP_TORCH_THREADS': '1'}, timeout=120)
    yield dict(url=url, log=log_path)
    stop_app(proc)


def test_identical_concurrent_compares_are_served_whole_or_busy(default_server):
    """20 clients send the same compare at once: each answer is complete (every file downloads in full and equals
    the lone request's) or the busy message; no other error, and the server log holds no traceback."""
    n = 20
    request = (EXAMPLES[0], MODELS, 128)
    reference = result_files(call(Client(default_server['url'], verbose=False), *request))
    clients = [Client(default_server['url'], verbose=False) for _ in range(n)]
    barrier = threading.Barrier(n)

    def one(client):
        barrier.wait()
        try:
            files = result_files(call(client, *request))
        except AppError as error:
            return 'busy' if str(error) == BUSY_MESSAGE else f'error: {error}'
        except Exception as error:  # noqa: BLE001  (a cut response, a timeout: failures)
            return f'error: {type(error).__name__}: {error}'
        return 'whole' if files == reference else 'different'

    with ThreadPoolExecutor(n) as pool:
        outcomes = list(pool.map(one, clients))
    figures = dict(requests=n, whole=outcomes.count('whole'), busy=outcomes.count('busy'),
                   failed=[o for o in outcomes if o not in ('whole', 'busy')], files_per_answer=len(reference))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / 'identical.json').write_text(json.dumps(figures, indent=1))
    print('\nidentical:', json.dumps(figures))
    assert set(outcomes) <= {'whole', 'busy'}, outcomes
    assert outcomes.count('whole') >= 2, outcomes  # several answers downloaded while others were written
    log = default_server['log'].read_text()
    assert 'Traceback' not in log and 'LocalProtocolError' not in log, log[-3000:]


def wait_until_running(job, timeout=120):
    from gradio_client.utils import Status
    deadline = time.monotonic() + timeout
    while job.status().code not in (Status.PROCESSING, Status.PROGRESS, Status.FINISHED):
        assert time.monotonic() < deadline, job.status()
        time.sleep(0.05)


def test_a_full_app_answers_busy_at_once_and_keeps_serving(server):
    """While a slow request runs, ``max_waiting`` + 2 more arrive together: at most ``max_waiting`` of them wait
    and complete, the others are refused within seconds with BUSY_MESSAGE, and the slow one completes."""
    waiting = server['max_waiting'] if server['max_waiting'] is not None else 8
    clients = [Client(server['url'], verbose=False) for _ in range(waiting + 3)]
    slow = clients[0].submit(handle_file(str(REPO / EXAMPLES[0])), MODELS, 'cpu', 'fp32', 384, 0.5,
                             api_name='/compare')
    wait_until_running(slow)

    def one(client):
        start = time.monotonic()
        try:
            result = call(client, EXAMPLES[1], MODELS[:1], 128)
            return 'served' if len(result[1]) == 1 else 'wrong', time.monotonic() - start
        except AppError as error:
            return ('busy' if str(error) == BUSY_MESSAGE else f'error: {error}'), time.monotonic() - start

    with ThreadPoolExecutor(len(clients) - 1) as pool:
        outcomes = list(pool.map(one, clients[1:]))
    kinds = [kind for kind, _ in outcomes]
    figures = dict(arrived=len(kinds), served=kinds.count('served'), busy=kinds.count('busy'),
                   busy_answer_max_s=round(max([t for k, t in outcomes if k == 'busy'], default=0), 3))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f'busy{"-long" if LONG else ""}.json').write_text(json.dumps(figures, indent=1))
    print('\nbusy:', json.dumps(figures))
    assert set(kinds) <= {'served', 'busy'}, outcomes
    assert kinds.count('busy') >= 1 and kinds.count('served') <= waiting + 1, outcomes
    assert all(seconds < 5 for kind, seconds in outcomes if kind == 'busy'), outcomes  # at once (loaded machine)
    status, masks, *_ = slow.result(timeout=REQUEST_TIMEOUT)
    assert len(masks) == len(MODELS)


def test_files_outside_the_upload_folder_cannot_be_named(server, tmp_path):
    """An API client that names a server path instead of uploading gets an error, not the file's content."""
    secret = tmp_path / 'secret.png'
    Image.new('RGB', (8, 8), 'red').save(secret)
    for path in (str(secret), '/etc/passwd', str(REPO / 'weights' / 'README.md'), '../../../../etc/passwd'):
        body = json.dumps({'data': [{'path': path, 'meta': {'_type': 'gradio.FileData'}}, MODELS[:1], 'cpu',
                                    'fp32', 128, 0.5, 'none']}).encode()
        request = urllib.request.Request(server['url'] + 'gradio_api/call/compare', data=body,
                                         headers={'Content-Type': 'application/json'})
        try:
            event_id = json.loads(urllib.request.urlopen(request, timeout=30).read())['event_id']
        except urllib.error.HTTPError as error:  # refused before queueing: fine
            assert error.code in (400, 403, 422), error
            continue
        with urllib.request.urlopen(f'{server["url"]}gradio_api/call/compare/{event_id}', timeout=120) as stream:
            events = stream.read().decode()
        assert 'event: error' in events and 'event: complete' not in events, (path, events[:500])


def test_model_names_from_the_api_are_checked_against_the_zoo(server):
    client = Client(server['url'], verbose=False)
    for names in (['../../etc/passwd'], ['weights/demo/upernet_asmlp_nano'], ['UPERNET_ASMLP_NANO'],
                  [MODELS[0] + '/../x']):
        with pytest.raises(AppError, match='not in the list of choices|unknown model'):
            call(client, EXAMPLES[0], names, 128)
