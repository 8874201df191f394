"""The app as a Hugging Face Space: ``hardware.py`` (the hardware kinds, ``data/space.json``, and which one runs
now), ``export.py`` (``python -m asmlp export-space``: the Space folder), ``push.py`` (create / update the Space,
request its hardware), ``zerogpu.py`` (the ``@spaces.GPU`` wrapping of the model handlers), ``warmup.py`` (what a
cold cpu-basic Space loads first), ``runtime.py`` (all of it handed to the app:
:func:`~asmlp.space.runtime.space_deployment`), ``cli.py`` (:func:`register_cli`). Importing this package imports
neither torch nor gradio.
"""
