"""The page needs only the zoo data: building the app imports neither torch nor timm, and the engine that runs the
models is created in the background; a request that arrives first hears that the app is starting, then is served."""
import subprocess
import sys

import numpy as np


def test_building_the_page_imports_neither_torch_nor_timm():
    code = ('import sys\nfrom asmlp.app import build_app\nfrom asmlp.space.runtime import space_deployment\n'
            'build_app(deployment=space_deployment())\n'
            'print(sorted(m for m in ("torch", "timm") if m in sys.modules))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == '[]'


def test_a_request_before_the_engine_is_ready_waits_and_says_so():
    from asmlp.app import EngineStarter
    from asmlp.engine import Engine
    starter = EngineStarter()
    try:
        assert not starter.ready
        heard = []
        engine = starter.get(progress=lambda fraction, desc: heard.append(desc))
        assert isinstance(engine, Engine) and starter.ready
        assert heard == [EngineStarter.STARTING] and 'Starting' in heard[0]
        assert starter.get() is engine  # created once
        image = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
        (result,) = engine.segment(image, ['upernet_asmlp_nano'], 'cpu', 'fp32', 64)
        assert result.labels.shape == (40, 60)
    finally:
        starter.close()


def test_an_engine_that_cannot_start_is_a_clear_fault(monkeypatch):
    import pytest

    import asmlp.engine
    from asmlp.app import EngineStarter

    def broken(*args, **kwargs):
        raise OSError('disk gone')
    monkeypatch.setattr(asmlp.engine, 'Engine', broken)
    starter = EngineStarter()
    with pytest.raises(RuntimeError, match='could not start its engine: disk gone'):
        starter.get()
    starter.close()
