"""Where ``asqsd local`` puts its queue by default, and the credentials local mode signs with.

A module of its own so ``asqsd send`` (which defaults to that queue) does not import the emulator.
"""

from __future__ import annotations

from typing import Final

DEFAULT_PORT: Final = 9324
DEFAULT_QUEUE: Final = "default"
LOCAL_REGION: Final = "us-east-1"
LOCAL_ACCOUNT: Final = "000000000000"  # the emulator's account id
# The emulator ignores signatures; these only let requests be signed. Never an AWS key.
LOCAL_ACCESS_KEY: Final = "local"
LOCAL_SECRET_KEY: Final = "local"  # noqa: S105 - a placeholder for a local emulator


def local_endpoint(port: int = DEFAULT_PORT) -> str:
    """The emulator's endpoint on 127.0.0.1."""
    return f"http://127.0.0.1:{port}"


def local_queue_url(port: int = DEFAULT_PORT, queue: str = DEFAULT_QUEUE) -> str:
    """The URL of ``queue`` in the emulator of ``asqsd local --port port``."""
    return f"{local_endpoint(port)}/{LOCAL_ACCOUNT}/{queue}"
