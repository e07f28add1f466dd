"""Reliability and security suite: ledger runs under SQS, worker and process faults."""
