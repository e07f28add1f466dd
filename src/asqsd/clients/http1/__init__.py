"""One HTTP/1.1 keep-alive engine (parser, connection, pool) under the worker and SQS clients."""
