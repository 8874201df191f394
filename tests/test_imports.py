"""``import asmlp`` is light (no torch, no timm), and the AS-MLP classifiers reach timm's registry in either import
order — each case in a fresh interpreter."""
import subprocess
import sys

import pytest


def fresh(code: str) -> str:
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip()


def test_import_is_light():
    assert fresh('import sys, asmlp; print(sorted(m for m in ("torch", "timm", "gradio") if m in sys.modules))') == '[]'


@pytest.mark.parametrize('imports', ['import asmlp, timm', 'import timm, asmlp',
                                     'import asmlp\nfrom timm import create_model as c\nimport timm'])
def test_timm_knows_the_models_in_either_order(imports):
    code = f'{imports}\nm = timm.create_model("asmlp_tiny", embed_dim=8, depths=(1, 1, 1, 1))\n' \
           'print(type(m).__module__, sorted(timm.list_models("asmlp*")))'
    assert fresh(code) == "asmlp.models.asmlp ['asmlp_base', 'asmlp_small', 'asmlp_tiny']"


def test_public_names_and_submodules_load_on_first_use():
    code = ('import asmlp\n'
            'print(asmlp.create_segmenter("upernet_asmlp_nano").__class__.__name__, asmlp.axial_shift.__name__, '
            'asmlp.load_pretrained.__name__, asmlp.hub.WeightStatus.__name__, "list_models" in dir(asmlp))\n'
            'try:\n    asmlp.no_such_name\nexcept AttributeError as e:\n    print(e)')
    assert fresh(code).splitlines() == ['Segmenter axial_shift load_pretrained WeightStatus True',
                                        "module 'asmlp' has no attribute 'no_such_name'"]
