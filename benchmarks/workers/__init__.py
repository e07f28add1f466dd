"""The benchmark worker: the HTTP server the daemon under test delivers to.

``python -m benchmarks.workers.server`` runs it (``server``: the process, its latency models, statistics
and the aiohttp app behind ``--server aiohttp``; ``lean``: the default raw HTTP/1.1 server with timerfd
job timers).
"""
