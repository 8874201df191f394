"""Read checkpoint files without ever executing a pickle.

``load_checkpoint(path)`` returns the tensors of a checkpoint as a flat ``{name: tensor}`` dict:

* ``.safetensors`` files are read by safetensors (no code involved);
* ``torch.save`` files (zip format) are read by ``torch.load(..., weights_only=True)``, torch's restricted unpickler.
  Training checkpoints also hold Python objects besides the weights (AS-MLP's saves its yacs ``CfgNode`` config,
  mmcv's a ``meta`` dict that may hold numpy scalars, ``argparse.Namespace`` objects appear elsewhere). Their
  globals are listed beforehand (``torch.serialization.get_unsafe_globals_in_checkpoint``, a static scan) and each
  one is either given an inert stand-in class that only stores what the pickle hands it (the real module is never
  imported) or refused with a :class:`CheckpointError` naming it: functions, builtins other than plain data types,
  anything from modules that can reach the system (os, subprocess, importlib, pickle, ...), and torch globals
  that torch itself does not allow (a pickled ``nn.Module`` is not a checkpoint).

The weights are then taken from ``state_dict``, ``model`` or ``module`` (the usual wrappers: mmcv, the official
Swin/AS-MLP training scripts, DDP) or the top level; everything else (optimizer, config, meta) is dropped.
Unreadable files (empty, truncated, corrupt zip or safetensors header, the legacy pre-zip torch format) and files
without tensors raise :class:`CheckpointError`, a ``ValueError`` whose one-line message names the file.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from .errors import first_line

__all__ = ['CheckpointError', 'load_checkpoint', 'refusal_reason', 'sha256_file']

WEIGHT_KEYS = ('state_dict', 'model', 'module')  # tried in this order, at most two levels deep

# Globals whose module (or a parent package) is one of these are refused, whatever their name.
_DENIED_MODULES = frozenset({
    'builtins', '__builtin__', 'os', 'posix', 'nt', 'posixpath', 'ntpath', 'sys', 'subprocess', 'shutil',
    'importlib', 'imp', 'zipimport', 'pkgutil', 'runpy', 'socket', 'ssl', 'select', 'selectors', 'pickle',
    '_pickle', 'copyreg', 'copy', 'marshal', 'shelve', 'dbm', 'ctypes', 'cffi', 'io', '_io', 'codecs', 'types',
    'functools', 'operator', '_operator', 'itertools', 'inspect', 'code', 'codeop', 'pdb', 'bdb', 'pydoc',
    'timeit', 'trace', 'profile', 'cProfile', 'gc', 'weakref', 'webbrowser', 'multiprocessing', 'threading',
    '_thread', 'concurrent', 'asyncio', 'signal', 'pty', 'tty', 'fcntl', 'resource', 'mmap', 'tempfile', 'glob',
    'fileinput', 'zipfile', 'tarfile', 'http', 'urllib', 'ftplib', 'smtplib', 'telnetlib', 'xmlrpc', 'email',
    'logging', 'site', 'sysconfig', 'platform', 'venv', 'ensurepip', 'pip', 'setuptools', 'distutils',
    'torch', 'dill', 'cloudpickle', 'joblib', 'numpy.testing', 'numpy.f2py', 'numpy.distutils', 'numpy.lib',
    'IPython', 'tkinter', 'turtle', 'idlelib',
})
# Globals that are plain data reconstructors or data types, allowed before any other rule (everything else in
# lower case is taken for a function and refused).
_DATA_GLOBALS = frozenset({
    'numpy.core.multiarray.scalar', 'numpy._core.multiarray.scalar',
    'numpy.core.multiarray._reconstruct', 'numpy._core.multiarray._reconstruct',
    'numpy.dtype', 'numpy.ndarray', 'numpy.bool_', 'numpy.bool', 'numpy.str_', 'numpy.bytes_',
    *(f'numpy.{t}{bits}' for t in ('int', 'uint') for bits in (8, 16, 32, 64)),
    *(f'numpy.float{bits}' for bits in (16, 32, 64)), 'numpy.complex64', 'numpy.complex128', 'numpy.longdouble',
    'datetime.datetime', 'datetime.date', 'datetime.time', 'datetime.timedelta', 'datetime.timezone',
    'collections.defaultdict', 'collections.deque',
    'builtins.slice', 'builtins.range', 'builtins.frozenset', 'builtins.list', 'builtins.dict', 'builtins.tuple',
    'builtins.int', 'builtins.float', 'builtins.str', 'builtins.bytes', 'builtins.bool', 'builtins.object',
    'torch.torch_version.TorchVersion',  # a str subclass some trainers store in their metadata
})
_CLASS_NAME = re.compile(r'_*[A-Z][A-Za-z0-9_]*')
_IDENTIFIER_PATH = re.compile(r'[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+')
_DICT_LIKE_NAME = re.compile(r'(Dict|CfgNode|Config|AttrDict|Dot[Mm]ap)$')


class CheckpointError(ValueError):
    """A checkpoint that cannot be read safely, or holds no weights. The message is one line naming the file."""


_sha_lock = threading.Lock()
_sha_memo: dict[tuple, str] = {}


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of the file at ``path`` (remembered per path, inode, size and mtime: a 1 GB checkpoint is not
    read again while it is unchanged)."""
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    with _sha_lock:
        if key in _sha_memo:
            return _sha_memo[key]
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(chunk_size), b''):
            digest.update(chunk)
    with _sha_lock:
        _sha_memo[key] = digest.hexdigest()
    return _sha_memo[key]


def refusal_reason(name: str) -> str | None:
    """Why the pickle global ``name`` ('module.Name') is refused, or None if it may get an inert stand-in."""
    if not _IDENTIFIER_PATH.fullmatch(name):
        return 'not a dotted name'
    if name in _DATA_GLOBALS:
        return None
    parts = name.split('.')
    for i in range(1, len(parts)):
        if '.'.join(parts[:i]) in _DENIED_MODULES:
            return f'module {".".join(parts[:i])} is not allowed in a checkpoint'
    if parts[-1].startswith('__') and parts[-1].endswith('__'):
        return 'dunder name'
    if not _CLASS_NAME.fullmatch(parts[-1]):
        return 'looks like a function, not a data class'
    return None


class _StandIn:
    """Inert stand-in for a data class named in a checkpoint: stores its arguments and pickled state, nothing else."""

    global_name = '?'

    def __new__(cls, *args, **kwargs):
        self = object.__new__(cls)
        self.__dict__['args'] = args
        self.__dict__['kwargs'] = kwargs
        return self

    def __init__(self, *args, **kwargs):  # called by REDUCE (cls(*args)); everything was stored by __new__
        pass

    def __setstate__(self, state):  # BUILD: keep the state as given
        self.__dict__['state'] = state

    def __repr__(self) -> str:
        return f'<stand-in for {self.global_name}>'


class _DictStandIn:
    """Stand-in for a dict subclass (yacs ``CfgNode``, mmcv ``ConfigDict``): the object becomes a plain OrderedDict.

    torch's restricted unpickler fills only exact dict / OrderedDict objects, so ``__new__`` returns one; its
    attributes (the pickled ``__dict__``) land in the OrderedDict's own ``__dict__``.
    """

    global_name = '?'

    def __new__(cls, *args, **kwargs):
        return OrderedDict()


class _ListStandIn(list):
    """Stand-in for a list subclass: a list that only holds what the pickle appends."""

    global_name = '?'

    def __new__(cls, *args, **kwargs):
        return list.__new__(cls)

    def __init__(self, *args, **kwargs):
        super().__init__()

    def __setstate__(self, state):
        self.__dict__['state'] = state


def _stand_in(name: str, base: type) -> type:
    return type(f'StandIn[{name}]', (base,), {'global_name': name, '__module__': __name__})


def _fail(path: Path, reason: str) -> CheckpointError:
    return CheckpointError(f'{path}: {reason}')


def _looks_like_safetensors(head: bytes) -> bool:
    # 8-byte little-endian header length, then a JSON object
    return len(head) >= 9 and head[8:9] == b'{' and int.from_bytes(head[:8], 'little') < (1 << 32)


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file
    try:
        return load_file(str(path), device='cpu')
    except Exception as e:  # safetensors raises its own error type for bad headers / truncated data
        raise _fail(path, f'not a readable safetensors file ({first_line(e)})') from None


def _load_torch_zip(path: Path) -> Any:
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except (RuntimeError, ValueError, EOFError, pickle.UnpicklingError, OSError, KeyError) as e:
        message = first_line(e)
        if 'torchscript' in message.lower():
            raise _fail(path, 'a TorchScript archive, not a checkpoint') from None
        raise _fail(path, f'truncated or corrupt torch checkpoint ({message})') from None
    refused = {name: reason for name in sorted(names) if (reason := refusal_reason(name))}
    if refused:
        detail = '; '.join(f'{name} ({reason})' for name, reason in refused.items())
        raise _fail(path, f'refusing to load: the pickle references {detail}')

    variants = {name: (_DictStandIn if _DICT_LIKE_NAME.search(name) else _StandIn) for name in names}
    for _ in range(2 * len(variants) + 1):
        stand_ins = {name: _stand_in(name, base) for name, base in variants.items()}
        try:
            with torch.serialization.safe_globals([(cls, name) for name, cls in stand_ins.items()]):
                return torch.load(path, map_location='cpu', weights_only=True)
        except pickle.UnpicklingError as e:
            message = str(e)
            # a dict / list subclass whose items the restricted unpickler will only fill into a real dict / list
            retry = [name for name, cls in stand_ins.items() if repr(cls) in message and variants[name] is _StandIn]
            if not retry:
                raise _fail(path, f'refusing to load: {first_line(e)}') from None
            base = _ListStandIn if 'append' in message else _DictStandIn
            variants.update({name: base for name in retry})
        except (RuntimeError, EOFError, ValueError, KeyError, OSError, TypeError, AttributeError) as e:
            raise _fail(path, f'truncated or corrupt torch checkpoint ({first_line(e)})') from None
    raise _fail(path, 'refusing to load: the pickle could not be read with inert stand-ins')


def _tensors(mapping: Mapping) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in mapping.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def _find_weights(obj: Any, depth: int = 0) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping):
        return {}
    if depth < 2:
        for key in WEIGHT_KEYS:
            if isinstance(obj.get(key), Mapping) and (found := _find_weights(obj[key], depth + 1)):
                return found
    return _tensors(obj)


def load_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The weights of the checkpoint at ``path`` as ``{name: CPU tensor}``, never executing a pickle.

    ``.safetensors`` (or a file that starts like one) goes through safetensors; anything else must be a
    ``torch.save`` zip file and goes through ``torch.load(weights_only=True)`` with inert stand-ins for the data
    classes it names (see the module docstring). Raises :class:`CheckpointError` for unreadable, unsafe or
    weight-less files.
    """
    path = Path(path)
    if not path.is_file():
        raise _fail(path, 'no such file' if not path.exists() else 'not a file')
    if path.stat().st_size == 0:
        raise _fail(path, 'empty file')
    with open(path, 'rb') as f:
        head = f.read(16)
    if path.suffix == '.safetensors' or _looks_like_safetensors(head):
        obj = _load_safetensors(path)
    elif head.startswith(b'PK\x03\x04'):
        obj = _load_torch_zip(path)
    elif head[:1] == b'\x80':
        raise _fail(path, 'legacy (pre-zip) torch.save pickle format, which is not read here; re-save it with a '
                          'current torch.save or as .safetensors')
    else:
        raise _fail(path, 'neither a torch.save zip file nor a safetensors file')
    weights = _find_weights(obj)
    if not weights:
        what = f'keys {sorted(map(str, obj))[:8]}' if isinstance(obj, Mapping) else type(obj).__name__
        raise _fail(path, f'holds no tensors (found {what})')
    return weights
