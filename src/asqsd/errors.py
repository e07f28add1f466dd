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
    """An SQS call failed. ``retryable`` tells whether trying again later may help; ``denied``
    that SQS accepted the credentials but the IAM policy does not allow :attr:`permission`."""

    def __init__(
        self, operation: str, code: str, message: str, *, retryable: bool, denied: bool = False
    ) -> None:
        super().__init__(f"{operation} failed: {code}: {message}")
        self.operation = operation
        self.code = code
        self.retryable = retryable
        self.denied = denied

    @property
    def permission(self) -> str:
        """The IAM action that authorises the call: SQS authorises each ``*Batch`` call by its
        singular action (DeleteMessageBatch by ``sqs:DeleteMessage``)."""
        return "sqs:" + self.operation.removesuffix("Batch")
