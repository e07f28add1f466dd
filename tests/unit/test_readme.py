"""The README quick start and .ci/run stay in step (CI runs the README's test command)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section)


def test_quick_start_has_exactly_two_commands() -> None:
    """One runs `asqsd local`, one installs and runs the tests."""
    commands = quick_start_commands()
    assert len(commands) == 2
    assert "asqsd local" in commands[0]
    assert commands[1].endswith("pytest")


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run contains the README's test command verbatim."""
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert quick_start_commands()[1] in ci_lines


def test_config_reference_is_generated_from_the_model() -> None:
    """The README's configuration table is exactly what `python -m asqsd.cli.reference` prints."""
    from asqsd.cli.reference import BEGIN, END, readme_block

    text = (ROOT / "README.md").read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    assert text[start:end] == readme_block()
