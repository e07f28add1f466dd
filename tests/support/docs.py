"""Read the repository's Markdown docs the way a user copies from them: by section and code block.

Tests that load a documented example (an IAM policy, a sample config, alerting rules) read it
from the page itself, so the page cannot go stale without a test failing.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def section(page: str, heading: str) -> str:
    """The text under ``heading`` (a whole ``#``-line) up to the next heading of the same or a
    higher level; ``page`` is relative to the repository root."""
    text = (ROOT / page).read_text()
    level = len(heading) - len(heading.lstrip("#"))
    body = text.split(f"\n{heading}\n", 1)[1]
    match = re.search(rf"\n#{{1,{level}}} ", body)
    return body[: match.start()] if match else body


def code_blocks(text: str, language: str) -> list[str]:
    """The contents of every fenced code block tagged ``language`` in ``text``, in order."""
    return re.findall(rf"```{re.escape(language)}\n(.*?)```", text, flags=re.DOTALL)
