"""asqsd's exception hierarchy. Library code raises these; only the CLI maps them to exit codes."""

from __future__ import annotations


class AsqsdError(Exception):
    """Base class of every error asqsd raises on purpose."""


class ConfigError(AsqsdError):
    """The settings are invalid. ``problems`` holds one human-readable line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class StartupError(AsqsdError):
    """The daemon cannot start (queue missing, access key rejected, bad cron.yaml...)."""


class SQSError(AsqsdError):
    """An SQS call failed. ``retryable`` tells whether trying again later may help."""

    def __init__(self, operation: str, code: str, message: str, *, retryable: bool) -> None:
        super().__init__(f"{operation} failed: {code}: {message}")
        self.operation = operation
        self.code = code
        self.retryable = retryable
