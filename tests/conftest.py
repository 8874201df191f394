"""Test-wide settings: no network, no telemetry, deterministic small CPU runs."""
import os

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('HF_HUB_DISABLE_TELEMETRY', '1')
os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')
os.environ.setdefault('TRITON_INTERPRET', '1')  # must precede any @triton.jit definition

import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope='session')
def app_url(tmp_path_factory):
    """``python app.py`` (the README's command) on a free loopback port, offline; start-up must log no error."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    log_path = tmp_path_factory.mktemp('app') / 'app.log'
    env = dict(os.environ, HF_HUB_OFFLINE='1', GRADIO_ANALYTICS_ENABLED='False', PYTHONUNBUFFERED='1')
    env.pop('TRITON_INTERPRET', None)
    with open(log_path, 'w') as log:
        proc = subprocess.Popen([sys.executable, 'app.py', '--port', str(port)], cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    url = f'http://127.0.0.1:{port}/'
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f'app.py did not start:\n{log_path.read_text()[-3000:]}')
            time.sleep(0.25)
    startup_log = log_path.read_text()
    assert 'Traceback' not in startup_log and 'Error' not in startup_log, startup_log[-3000:]
    yield url
    proc.terminate()
    proc.wait(timeout=30)
