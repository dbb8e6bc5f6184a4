"""node_exporter's Linux collectors, one module each, every one reading through ``Files``.

Each module has ``collect(fs, opts) -> families`` and ``PATHS``: the files and directories it reads,
which is what the SSH transport copies from a remote host to feed the same function.
"""
