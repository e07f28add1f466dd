"""Everything that talks to another process: the HTTP/1.1 engine, the worker clients, the SQS clients."""
