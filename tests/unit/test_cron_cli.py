"""``asqsd cron list`` and the ``cron trigger`` checks made before any SQS call (in-process)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from asqsd.cli.cron import list_tasks
from asqsd.cli.main import main
from asqsd.periodic.cron_yaml import load_cron_file

CRON = """version: 1
cron:
  - name: "backup"
    url: "/tasks/backup"
    schedule: "0 */12 * * *"
  - name: "tick"
    url: "/tasks/tick?x=1"
    schedule: "*/5 * * * *"
"""


@pytest.fixture
def cron_file(tmp_path: Path) -> Path:
    path = tmp_path / "cron.yaml"
    path.write_text(CRON)
    return path


def test_list_prints_name_url_schedule_and_next_run_in_utc(
    cron_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One aligned line per task, in cron.yaml's order, the next run after now in UTC."""
    now = datetime(2026, 12, 6, 7, 13, 30, tzinfo=UTC)
    assert list_tasks(cron_file, load_cron_file(cron_file), now) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "NAME    URL              SCHEDULE      NEXT RUN (UTC)",
        "backup  /tasks/backup    0 */12 * * *  2026-12-06T12:00:00Z",
        "tick    /tasks/tick?x=1  */5 * * * *   2026-12-06T07:15:00Z",
    ]
    assert f"2 task(s) in {cron_file}" in err


def test_list_through_the_command_line(cron_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`asqsd cron list --cron-file F` needs no queue or registry table."""
    assert main(["cron", "list", "--cron-file", str(cron_file)]) == 0
    assert capsys.readouterr().out.startswith("NAME")


def test_list_without_a_cron_file_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    """No cron.yaml found: nothing to list, exit 0, a line on stderr."""
    assert list_tasks(None, [], datetime.now(UTC)) == 0
    out, err = capsys.readouterr()
    assert out == "" and "no cron.yaml found" in err


def test_an_invalid_cron_file_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The file is checked as `asqsd run` checks it: exit 2, the problem named."""
    bad = tmp_path / "cron.yaml"
    bad.write_text('version: 1\ncron:\n  - name: "x"\n    url: "/x"\n    schedule: "61 * * * *"\n')
    assert main(["cron", "list", "--cron-file", str(bad)]) == 2
    assert "schedule" in capsys.readouterr().err


def test_trigger_needs_a_queue(cron_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A known task but no queue_url: exit 2 before any SQS call."""
    assert main(["cron", "trigger", "tick", "--cron-file", str(cron_file)]) == 2
    assert "queue_url is required" in capsys.readouterr().err


def test_trigger_without_a_cron_file_knows_no_task(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No cron.yaml in the searched directories: any name is unknown, exit 2."""
    monkeypatch.setattr("asqsd.periodic.runner.DEFAULT_SEARCH_DIRS", (tmp_path,))
    monkeypatch.setattr("asqsd.periodic.runner.app_deploy_dir", lambda: None)
    assert main(["cron", "trigger", "tick"]) == 2
    assert "unknown task 'tick' (no cron.yaml found); known tasks: none" in capsys.readouterr().err
