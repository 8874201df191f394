"""Test-wide settings: no network, no telemetry, deterministic small CPU runs; no test leaves a thread of the
project's own (named ``asmlp-...``) running."""
import os
import threading
import time

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('HF_HUB_DISABLE_TELEMETRY', '1')
os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')
os.environ.setdefault('TRITON_INTERPRET', '1')  # must precede any @triton.jit definition

import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))

import pytest  # noqa: E402

from asmlp.bench.app import start_app, stop_app  # noqa: E402


THREAD_PREFIX = 'asmlp-'
THREAD_GRACE_S = 5.0  # a thread that is ending (its work just done) may take a moment


def project_threads() -> list:
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX) and t.is_alive()]


@pytest.fixture(autouse=True)
def no_project_thread_left():
    """Fails a test that leaves a thread named ``asmlp-...`` running after its teardown (every engine, app and
    thread a test starts is stopped by it). Threads already running before the test are another test's fault."""
    before = set(project_threads())
    yield
    deadline = time.monotonic() + THREAD_GRACE_S
    left = [t for t in project_threads() if t not in before]
    while left and time.monotonic() < deadline:
        left[0].join(0.05)
        left = [t for t in project_threads() if t not in before]
    assert not left, f'threads left running: {", ".join(sorted(t.name for t in left))}'


class ServerLog:
    """The server log of the ``python app.py`` under test; :meth:`new` returns what was written since the last call."""

    def __init__(self, path):
        self.path, self.seen = path, 0

    def new(self) -> str:
        text = self.path.read_text(errors='replace')
        fresh, self.seen = text[self.seen:], len(text)
        return fresh


@pytest.fixture(scope='session')
def app_server(tmp_path_factory):
    """``python app.py`` (the README's command) on a free loopback port, offline; start-up must log no error.
    Yields its URL and its :class:`ServerLog`."""
    log_path = tmp_path_factory.mktemp('app') / 'app.log'
    proc, url = start_app(log_path)
    log = ServerLog(log_path)
    startup_log = log.new()
    assert 'Traceback' not in startup_log and 'Error' not in startup_log, startup_log[-3000:]
    yield url, log
    stop_app(proc)


@pytest.fixture(scope='session')
def app_url(app_server):
    return app_server[0]


@pytest.fixture
def server_log(app_server):
    """The app's log from the start of the test on."""
    log = app_server[1]
    log.new()
    return log
