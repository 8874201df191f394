"""``python -m asmlp doctor``: one command that checks a machine end to end, GPU included.

- ``machine.py``: versions and devices (the CPU flags behind precision "auto", each GPU);
- ``kernel_checks.py``: the shift backends bit-identical to the reference, the fused token mixing against eager,
  what backend "auto" picks and why;
- ``model_checks.py``: the demo models on each device against the CPU in fp32, ``torch.compile`` of an AS-MLP block;
- ``plan.py``: which checks run here, by name; ``outcome.py``: one check's outcome;
- ``cli.py``: the command (:func:`run_doctor`, :func:`register_cli`).

Importing this package imports neither torch nor any UI library.
"""
from .cli import main, register_cli, run_doctor

__all__ = ['main', 'register_cli', 'run_doctor']
