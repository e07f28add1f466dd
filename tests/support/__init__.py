"""Helpers shared by the test suites (servers on loopback, polling with deadlines)."""
