"""asqsd: an asyncio reimplementation of the Elastic Beanstalk worker-tier SQS daemon."""

__version__ = "0.1.0"

__all__ = ["__version__"]
