"""The server log keeps real faults and only them: a fault inside the app (an injected I/O error) logs its traceback
and the person still gets a clear message; expected user errors log none (tests/test_app_api.py checks each)."""
from pathlib import Path

import pytest

gradio_client = pytest.importorskip('gradio_client')
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from asmlp.bench.app import start_app, stop_app  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / 'tests' / 'fixtures' / 'fault_injection'
EXAMPLE = str(REPO / 'assets' / 'examples' / 'coffee.jpg')


def test_an_internal_fault_is_logged_with_its_traceback_and_answered(tmp_path):
    log_path = tmp_path / 'app.log'
    proc, url = start_app(log_path, extra_env={'PYTHONPATH': f'{FIXTURE}:{REPO}'})
    try:
        client = Client(url, verbose=False)
        with pytest.raises(AppError, match=r'Segmentation failed \(OSError: .*Input/output error'):
            client.predict(handle_file(EXAMPLE), ['upernet_asmlp_nano'], 'cpu', 'fp32', 128, 0.5,
                           api_name='/compare')
        empty = tmp_path / 'empty.png'
        empty.write_bytes(b'')
        with pytest.raises(AppError, match='empty'):  # an expected error in the same server
            client.predict(handle_file(str(empty)), ['upernet_asmlp_nano'], 'cpu', 'fp32', 128, 0.5,
                           api_name='/compare')
    finally:
        stop_app(proc)
    log = log_path.read_text()
    assert log.count('Traceback') == 1, log[-4000:]  # the fault's, once (not again by Gradio)
    assert 'ERROR asmlp.app: Segmentation failed' in log and 'in failing_segment' in log
    assert 'OSError: [Errno 5] Input/output error (injected by the test)' in log
    assert 'empty' not in log
