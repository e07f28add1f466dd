"""Client micro-benchmarks: the CPU the daemon's SQS and worker clients spend per call, on loopback.

``python -m benchmarks.micro.sqs_client_cost`` and ``python -m benchmarks.micro.http_client_cost``;
``microbench`` is what they share.
"""
