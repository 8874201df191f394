"""``python -m asmlp.train_demo``: the ``train-demo`` command on its own (see :mod:`asmlp.demo.cli`)."""
import sys

from .demo.cli import main, register_cli, run_train_demo

__all__ = ['main', 'register_cli', 'run_train_demo']

if __name__ == '__main__':
    sys.exit(main())
