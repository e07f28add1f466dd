"""asqsd benchmark suite: ``python -m benchmarks`` (see benchmarks/README.md).

Emulator, worker and daemon each run in their own process; the harness only drives them and reads their
counters (emulator admin API, worker ``/stats``, the daemon's ``/proc/PID`` files and its exit summary).
"""
