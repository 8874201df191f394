"""README: Space front matter and the two set-up commands."""
import re
from pathlib import Path

import yaml

README = (Path(__file__).resolve().parent.parent / 'README.md').read_text()


def test_space_front_matter():
    match = re.match(r'---\n(.*?)\n---\n', README, re.S)
    assert match, 'README.md must start with YAML front matter for the Hugging Face Space'
    meta = yaml.safe_load(match.group(1))
    assert meta['sdk'] == 'gradio' and meta['app_file'] == 'app.py'
    import gradio
    assert meta['sdk_version'] == gradio.__version__
    assert str(meta['python_version']).startswith('3.')
    assert (Path(__file__).resolve().parent.parent / meta['app_file']).is_file()


def test_set_up_commands():
    blocks = re.findall(r'```bash\n(.*?)```', README, re.S)
    assert 'pip install -r requirements.txt' in blocks[0] and 'app.py' in blocks[0]
    assert blocks[1].strip() == 'bash .ci/run'
