"""Test-wide settings: no network, no telemetry, deterministic small CPU runs."""
import os

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('HF_HUB_DISABLE_TELEMETRY', '1')
os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')
os.environ.setdefault('TRITON_INTERPRET', '1')  # must precede any @triton.jit definition

import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))

import pytest  # noqa: E402

from asmlp.bench.app import start_app, stop_app  # noqa: E402


@pytest.fixture(scope='session')
def app_url(tmp_path_factory):
    """``python app.py`` (the README's command) on a free loopback port, offline; start-up must log no error."""
    log_path = tmp_path_factory.mktemp('app') / 'app.log'
    proc, url = start_app(log_path)
    startup_log = log_path.read_text()
    assert 'Traceback' not in startup_log and 'Error' not in startup_log, startup_log[-3000:]
    yield url
    stop_app(proc)
