"""asmlp.allocator: the glibc settings apply where glibc is, and are skipped elsewhere."""
import platform
import sys

import pytest

from asmlp import allocator


@pytest.mark.skipif(not sys.platform.startswith('linux') or platform.libc_ver()[0] != 'glibc', reason='glibc only')
def test_settings_take_effect_on_glibc():
    assert allocator.keep_freed_memory() is True


def test_other_c_libraries_are_left_alone(monkeypatch):
    monkeypatch.setattr(allocator.platform, 'libc_ver', lambda: ('musl', '1.2'))
    assert allocator.keep_freed_memory() is False
