"""A stand-in for the ``spaces`` package (ZeroGPU), for tests: ``spaces.GPU`` as the real one is called
(``@spaces.GPU``, ``@spaces.GPU(duration=N or callable, size=...)``), a no-op unless ``SPACES_ZERO_GPU`` is true
(as ``spaces.config.Config.zero_gpu``). On "ZeroGPU" each call computes its duration with the callable (the same
arguments as the function: ``spaces/zero/wrappers.py`` ``static_duration``), sends the arguments and the result
through ``pickle`` as ZeroGPU's queues to its forked worker do (the caller gets the unpickled copy; a result that does
not pickle raises, as ``PicklingError`` does there; a generator function's items each cross it so), and appends one
JSON line per call to ``$FAKE_SPACES_LOG``: the function's name, the duration, the pickled result's size. The function
runs in this process, on the CPU.
"""
import functools
import inspect
import json
import os
import pickle

__version__ = '0.0-test'
calls = []


def _zero_gpu() -> bool:
    return os.environ.get('SPACES_ZERO_GPU', '').lower() in ('1', 'true')


def _picklable(value):
    try:
        return pickle.loads(pickle.dumps(value))
    except Exception:  # noqa: BLE001  (gr.Progress and the like: the real package passes them by context)
        return value


def GPU(task=None, *, duration=None, size=None):
    if not callable(task):
        return functools.partial(_gpu, duration=task if isinstance(task, int) else duration, size=size)
    return _gpu(task, duration=duration, size=size)


def _gpu(task, *, duration=None, size=None):
    if not _zero_gpu():
        return task

    def record(seconds, data):
        entry = {'function': task.__name__, 'duration': seconds, 'result_bytes': len(data)}
        calls.append(entry)
        if os.environ.get('FAKE_SPACES_LOG'):
            with open(os.environ['FAKE_SPACES_LOG'], 'a') as log:
                log.write(json.dumps(entry) + '\n')

    def arguments(args, kwargs):
        return tuple(_picklable(a) for a in args), {k: _picklable(v) for k, v in kwargs.items()}

    if inspect.isgeneratorfunction(task):  # each yielded item crosses the queue pickled; one record per call
        @functools.wraps(task)
        def stream(*args, **kwargs):
            seconds = duration(*args, **kwargs) if callable(duration) else (duration or 60)
            args, kwargs = arguments(args, kwargs)
            data = b''
            for item in task(*args, **kwargs):
                data = pickle.dumps(item)
                yield pickle.loads(data)
            record(seconds, data)
        return stream

    @functools.wraps(task)
    def call(*args, **kwargs):
        seconds = duration(*args, **kwargs) if callable(duration) else (duration or 60)
        args, kwargs = arguments(args, kwargs)
        data = pickle.dumps(task(*args, **kwargs))
        record(seconds, data)
        return pickle.loads(data)
    return call
