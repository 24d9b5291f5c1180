"""Executors: where a run's rows are scored when one process is not enough.

Only the "score these rows" stage is swapped: the driver still reads the input, decides each
row and writes every output, so a distributed run writes the same files as a single-process
one. `ray_exec` runs the unchanged engine in a pool of Ray actors that share one rate limit
(`pacing`); `ray_data` scores a `ray.data.Dataset` for application pipelines. Both need the
``ray`` extra (``pip install 'clearapi[ray]'``); nothing here is imported without it.
"""
