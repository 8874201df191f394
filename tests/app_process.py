"""Start ``python app.py`` (the README's command) as a process on a free loopback port, offline."""
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def start_app(log_path: Path, extra_env: dict | None = None, timeout: float = 90) -> tuple[subprocess.Popen, str]:
    """The running process and its URL, once it answers HTTP; its output goes to ``log_path``."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    env = dict(os.environ, HF_HUB_OFFLINE='1', GRADIO_ANALYTICS_ENABLED='False', PYTHONUNBUFFERED='1',
               **(extra_env or {}))
    env.pop('TRITON_INTERPRET', None)
    with open(log_path, 'w') as log:
        proc = subprocess.Popen([sys.executable, 'app.py', '--port', str(port)], cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    url = f'http://127.0.0.1:{port}/'
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f'app.py did not start:\n{log_path.read_text()[-3000:]}')
            time.sleep(0.25)
