"""The applications built on the engine: the ``codecstream`` command line (``cli``) and its
commands (``loopback``, ``tts``, ``bench`` with its Orpheus baseline, ``report``).

Nothing in the core imports this package; it imports the core. Submodules are imported on use.
"""
