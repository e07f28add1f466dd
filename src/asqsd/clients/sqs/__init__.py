"""SQS clients: the interface, wire helpers, SigV4, the lean transport and both implementations."""
