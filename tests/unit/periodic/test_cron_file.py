"""cron.yaml loading and validation, locating the file, and the task message."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from asqsd.errors import ConfigError
from asqsd.message import MessageAttribute
from asqsd.periodic.cron_yaml import (
    DEFAULT_SEARCH_DIRS,
    MAX_CRON_FILE_BYTES,
    TASK_MESSAGE_BODY,
    CronError,
    CronTask,
    find_cron_file,
    load_cron_file,
    parse_cron_yaml,
    parse_schedule,
    scheduled_at_header,
    task_message,
)

DOCS_EXAMPLE = """\
version: 1
cron:
 - name: "backup-job"      # unique task name
   url: "/backup"           # POST path
   schedule: "0 */12 * * *" # cron expression, evaluated in UTC
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(CronError) as caught:
        parse_cron_yaml(text)
    return caught.value.problems


def one_entry(
    name: str | None = "job", url: str | None = "/job", schedule: str | None = '"* * * * *"'
) -> str:
    """A version-1 file with one entry whose fields are the given YAML literals (None: omitted)."""
    lines = ["version: 1", "cron:", " - description: test entry"]
    lines += [
        f"   {key}: {value}" for key, value in (("name", name), ("url", url), ("schedule", schedule)) if value
    ]
    return "\n".join(lines) + "\n"


def test_docs_example_loads() -> None:
    (task,) = parse_cron_yaml(DOCS_EXAMPLE)
    assert task == CronTask(
        name="backup-job", url="/backup", schedule=parse_schedule("0 */12 * * *"), expression="0 */12 * * *"
    )
    assert task.schedule.hours == (0, 12)


def test_several_tasks_keep_file_order_and_ignore_other_keys() -> None:
    text = textwrap.dedent("""\
        version: 1
        extra_top_level: ignored
        cron:
          - name: z-last-alphabetically
            url: /z
            schedule: "@hourly"
            description: a description is allowed
          - name: "Remove unattended jobs"
            url: /STCleanupUnattendedJobs.do?mode=full&dry=0
            schedule: "*/30 * * * * *"
            timezone: ignored too
        """)
    tasks = parse_cron_yaml(text)
    assert [t.name for t in tasks] == ["z-last-alphabetically", "Remove unattended jobs"]
    assert tasks[1].url == "/STCleanupUnattendedJobs.do?mode=full&dry=0"
    assert tasks[1].expression == "*/30 * * * * *"
    assert tasks[1].schedule.minutes == (0, 30)


def test_empty_cron_list_means_no_tasks() -> None:
    assert parse_cron_yaml("version: 1\ncron: []\n") == []


def test_duplicate_names_keep_the_last_definition_and_warn() -> None:
    text = textwrap.dedent("""\
        version: 1
        cron:
          - {name: backup, url: /old, schedule: "@daily"}
          - {name: other, url: /other, schedule: "@hourly"}
          - {name: backup, url: /new, schedule: "@weekly"}
        """)
    warnings: list[str] = []
    tasks = parse_cron_yaml(text, warnings=warnings)
    # Stock stores tasks in a Ruby hash: the value is replaced, the position is the first one.
    assert [(t.name, t.url, t.expression) for t in tasks] == [
        ("backup", "/new", "@weekly"),
        ("other", "/other", "@hourly"),
    ]
    assert warnings == [
        'cron.yaml: entry 3 ("backup"): duplicate task name (first defined in entry 1); '
        "this later definition replaces it, as the stock daemon does"
    ]
    assert parse_cron_yaml(text) == tasks  # collecting warnings is optional


def test_warnings_are_not_emitted_when_the_file_is_rejected() -> None:
    text = (
        "version: 1\ncron:\n - {name: a, url: /a, schedule: '@daily'}\n - {name: a, url: /a, schedule: x}\n"
    )
    warnings: list[str] = []
    with pytest.raises(CronError):
        parse_cron_yaml(text, warnings=warnings)
    assert warnings == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "cron.yaml: file is empty; expected 'version: 1' and a 'cron' list"),
        ("# only a comment\n\n", "cron.yaml: file is empty; expected 'version: 1' and a 'cron' list"),
        (
            "version: 1\ncron: [\n",
            "cron.yaml: invalid YAML: while parsing a flow node expected the node content",
        ),
        ("version: 1\n  cron: x\n", "cron.yaml: invalid YAML: mapping values are not allowed here at line 2"),
        ("x: 2001-13-01\n", "cron.yaml: invalid YAML: month must be in 1..12"),
        ("- version: 1\n", "cron.yaml: must be a mapping with 'version' and 'cron', got a list"),
        ("just text\n", "cron.yaml: must be a mapping with 'version' and 'cron', got str \"just text\""),
        ("cron: []\n", "cron.yaml: version is missing; add 'version: 1'"),
        ("version: 2\ncron: []\n", "cron.yaml: unsupported version int 2; only version 1 exists"),
        ("version: 1.0\ncron: []\n", "cron.yaml: unsupported version float 1.0; only version 1 exists"),
        ("version: true\ncron: []\n", "cron.yaml: unsupported version bool True; only version 1 exists"),
        ("version:\ncron: []\n", "cron.yaml: unsupported version null; only version 1 exists"),
        (
            "version: '1'\ncron: []\n",
            'cron.yaml: version must be the number 1, not the string "1"; remove the quotes',
        ),
        ("version: 1\n", "cron.yaml: cron is missing; it must be a list of tasks"),
        ("version: 1\ncron:\n", "cron.yaml: cron must be a list of tasks, got null"),
        ("version: 1\ncron: {name: a}\n", "cron.yaml: cron must be a list of tasks, got a mapping"),
        ("version: 1\ncron: every day\n", 'cron.yaml: cron must be a list of tasks, got str "every day"'),
        (
            "version: 1\ncron: [x]\n",
            'cron.yaml: entry 1: must be a mapping with name, url and schedule, got str "x"',
        ),
        (
            "version: 1\ncron: [[]]\n",
            "cron.yaml: entry 1: must be a mapping with name, url and schedule, got a list",
        ),
        (one_entry(name=None), "cron.yaml: entry 1: name is missing"),
        (one_entry(url=None), 'cron.yaml: entry 1 ("job"): url is missing'),
        (one_entry(schedule=None), 'cron.yaml: entry 1 ("job"): schedule is missing'),
        (one_entry(name='""'), "cron.yaml: entry 1: name is empty"),
        (one_entry(name='"  "'), "cron.yaml: entry 1: name is empty"),
        (one_entry(url="''"), 'cron.yaml: entry 1 ("job"): url is empty'),
        (one_entry(schedule="''"), 'cron.yaml: entry 1 ("job"): schedule is empty'),
        (one_entry(name="42"), "cron.yaml: entry 1: name must be a string, got int 42"),
        (one_entry(name="null"), "cron.yaml: entry 1: name must be a string, got null"),
        (one_entry(url="7"), 'cron.yaml: entry 1 ("job"): url must be a string, got int 7'),
        (one_entry(schedule="5"), 'cron.yaml: entry 1 ("job"): schedule must be a string, got int 5'),
        (one_entry(schedule="[1, 2]"), 'cron.yaml: entry 1 ("job"): schedule must be a string, got a list'),
        (
            '{"version": 1, "cron": [{"name": "a\\u0007b", "url": "/", "schedule": "@daily"}]}',
            'cron.yaml: entry 1: name "a\\u0007b": contains the control character U+0007',
        ),
        (
            one_entry(schedule='"*/0 * * * *"'),
            'cron.yaml: entry 1 ("job"): schedule "*/0 * * * *": step must be >= 1 (minute field "*/0")',
        ),
        (
            one_entry(schedule='"@reboot"'),
            'cron.yaml: entry 1 ("job"): schedule "@reboot": @reboot is not supported',
        ),
        (
            one_entry(schedule='"0 0 30 2 *"'),
            'cron.yaml: entry 1 ("job"): schedule "0 0 30 2 *": day-of-month 30 never occurs in February, '
            "so it would never run",
        ),
    ],
)
def test_each_problem_has_its_own_message(text: str, expected: str) -> None:
    problems = problems_of(text)
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected), problems[0]


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("backup", 'must be a path starting with "/" (it is joined onto http://localhost/)'),
        ("http://example.com/x", 'must be a path starting with "/"'),
        ("//evil.example/x", 'must not start with "//", which would name another host'),
        ("/a b", "contains whitespace or a control character (U+0020); percent-encode it"),
        ("/a\tb", "contains whitespace or a control character (U+0009)"),
        ("/a\nb", "contains whitespace or a control character (U+000A)"),
        ("/a\u00a0b", "contains whitespace or a control character (U+00A0)"),
        ("/a\u0085b", "contains whitespace or a control character (U+0085)"),
        ("/a#frag", 'must not contain a "#" fragment'),
        ("/caf\u00e9", 'contains "é", which is not allowed in a URL; percent-encode it'),
        ("/a<b>", 'contains "<", which is not allowed in a URL'),
        ("/a\\b", 'contains "\\\\", which is not allowed in a URL'),
        ("/a|b", 'contains "|"'),
        ("/a%zz", 'has a "%" that does not start a %XX escape'),
        ("/a%2", 'has a "%" that does not start a %XX escape'),
    ],
)
def test_bad_urls(url: str, reason: str) -> None:
    # Escaped JSON is valid YAML; escaping keeps YAML from folding characters such as U+0085.
    text = f'{{"version": 1, "cron": [{{"name": "job", "url": {json.dumps(url)}, "schedule": "@daily"}}]}}'
    (problem,) = problems_of(text)
    assert problem.startswith(f'cron.yaml: entry 1 ("job"): url {_json(url)}: {reason}'), problem


@pytest.mark.parametrize(
    "url",
    [
        "/",
        "/backup",
        "/a/b/c.do",
        "/with?query=1&b=two",
        "/q?a=b?c",
        "/percent%20encoded%2F",
        "/sub-delims!$&'()*+,;=:@~._-",
        "/?",
    ],
)
def test_good_urls(url: str) -> None:
    text = f'{{"version": 1, "cron": [{{"name": "job", "url": {_json(url)}, "schedule": "@daily"}}]}}'
    assert parse_cron_yaml(text)[0].url == url


def _json(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def test_problems_are_printable_even_for_lone_surrogates() -> None:
    text = '{"version": 1, "cron": [{"name": "a\\ud800", "url": "/\\udfff", "schedule": "\\ud800"}]}'
    problems = problems_of(text)
    assert problems[0] == 'cron.yaml: entry 1: name "a\\ud800": contains the control character U+D800'
    assert len(problems) == 3
    for problem in problems:
        problem.encode("utf-8")  # would raise on a raw surrogate


def test_all_problems_are_collected() -> None:
    text = textwrap.dedent("""\
        version: "1"
        cron:
          - name: ok
            url: /ok
            schedule: "@daily"
          - name: backup
            url: backup
            schedule: "*/0 * * * *"
          - 12
          - url: /x
            schedule: "0 0 * * 1#2"
        """)
    assert problems_of(text) == [
        'cron.yaml: version must be the number 1, not the string "1"; remove the quotes',
        'cron.yaml: entry 2 ("backup"): url "backup": must be a path starting with "/" '
        "(it is joined onto http://localhost/)",
        'cron.yaml: entry 2 ("backup"): schedule "*/0 * * * *": step must be >= 1 (minute field "*/0")',
        "cron.yaml: entry 3: must be a mapping with name, url and schedule, got int 12",
        "cron.yaml: entry 4: name is missing",
        'cron.yaml: entry 4: schedule "0 0 * * 1#2": "#" (nth weekday of the month) is not supported '
        '(day-of-week field "1#2")',
    ]


def test_source_names_the_file() -> None:
    with pytest.raises(CronError) as caught:
        parse_cron_yaml("version: 3\ncron: []\n", source="/var/app/current/cron.yaml")
    assert caught.value.problems == [
        "/var/app/current/cron.yaml: unsupported version int 3; only version 1 exists"
    ]


def test_cron_error_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_cron_yaml("")
    assert isinstance(caught.value, CronError)
    assert str(caught.value) == "\n".join(caught.value.problems)


def test_huge_text_is_refused_before_parsing() -> None:
    text = "version: 1\ncron: []\n" + "#" * MAX_CRON_FILE_BYTES
    assert problems_of(text) == ["cron.yaml: larger than 1048576 bytes; refusing to parse it"]
    # The limit is on bytes: 600k two-byte characters are too many even though len() is below it.
    assert problems_of("# " + "é" * 600_000) == ["cron.yaml: larger than 1048576 bytes; refusing to parse it"]


def test_deep_nesting_is_a_cron_error() -> None:
    assert problems_of("[" * 700) == ["cron.yaml: invalid YAML: nested too deeply"]


def test_yaml_tags_for_python_objects_are_refused() -> None:
    (problem,) = problems_of("version: !!python/object/apply:os.system ['true']\ncron: []\n")
    assert "could not determine a constructor" in problem


# ---------------------------------------------------------------------------- files


def test_load_cron_file(tmp_path: Path) -> None:
    path = tmp_path / "cron.yaml"
    path.write_text(DOCS_EXAMPLE, encoding="utf-8")
    assert [t.name for t in load_cron_file(path)] == ["backup-job"]


def test_load_cron_file_names_the_path_in_problems(tmp_path: Path) -> None:
    path = tmp_path / "cron.yaml"
    path.write_text("version: 1\ncron:\n - {name: a, url: /a}\n", encoding="utf-8")
    with pytest.raises(CronError) as caught:
        load_cron_file(path)
    assert caught.value.problems == [f'{path}: entry 1 ("a"): schedule is missing']


def test_load_cron_file_passes_warnings_through(tmp_path: Path) -> None:
    path = tmp_path / "cron.yaml"
    entries = "".join(f" - {{name: a, url: {url}, schedule: '@daily'}}\n" for url in ("/a", "/b"))
    path.write_text(f"version: 1\ncron:\n{entries}", encoding="utf-8")
    warnings: list[str] = []
    assert [t.url for t in load_cron_file(path, warnings)] == ["/b"]
    assert len(warnings) == 1 and warnings[0].startswith(f'{path}: entry 2 ("a"): duplicate task name')


def test_load_cron_file_accepts_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "cron.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + DOCS_EXAMPLE.encode())
    assert len(load_cron_file(path)) == 1


def test_load_cron_file_refuses_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "cron.yaml"
    path.write_bytes(b"version: 1\n# caf\xe9\ncron: []\n")
    with pytest.raises(CronError) as caught:
        load_cron_file(path)
    assert caught.value.problems == [f"{path}: not valid UTF-8 (byte 16)"]


def test_load_cron_file_refuses_huge_files(tmp_path: Path) -> None:
    path = tmp_path / "cron.yaml"
    path.write_bytes(b"version: 1\ncron: []\n" + b"#" * MAX_CRON_FILE_BYTES)
    with pytest.raises(CronError) as caught:
        load_cron_file(path)
    assert caught.value.problems == [f"{path}: larger than 1048576 bytes; refusing to parse it"]


def test_load_cron_file_accepts_a_file_right_at_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "cron.yaml"
    head = DOCS_EXAMPLE.encode()
    path.write_bytes(head + b"#" * (MAX_CRON_FILE_BYTES - len(head)))
    assert len(load_cron_file(path)) == 1


@pytest.mark.parametrize("make", ["missing", "directory"])
def test_load_cron_file_unreadable(tmp_path: Path, make: str) -> None:
    path = tmp_path / "cron.yaml"
    if make == "directory":
        path.mkdir()
    with pytest.raises(CronError) as caught:
        load_cron_file(path)
    (problem,) = caught.value.problems
    assert problem.startswith(f"{path}: cannot read: ")


def test_find_cron_file_prefers_the_explicit_path(tmp_path: Path) -> None:
    explicit = tmp_path / "elsewhere.yml"
    explicit.write_text(DOCS_EXAMPLE)
    (tmp_path / "cron.yaml").write_text(DOCS_EXAMPLE)
    assert find_cron_file(explicit, [tmp_path]) == explicit


def test_find_cron_file_explicit_path_must_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(CronError) as caught:
        find_cron_file(missing, [tmp_path])
    assert caught.value.problems == [f"{missing}: cron file not found"]


def test_find_cron_file_searches_directories_in_order(tmp_path: Path) -> None:
    first, second, third = (tmp_path / n for n in ("deploy", "tomcat", "current"))
    for directory in (first, second, third):
        directory.mkdir()
    (second / "cron.yaml").write_text(DOCS_EXAMPLE)
    (third / "cron.yaml").write_text(DOCS_EXAMPLE)
    (first / "cron.yml").write_text(DOCS_EXAMPLE)  # only the exact name counts
    assert find_cron_file(None, [tmp_path / "absent", first, second, third]) == second / "cron.yaml"


def test_find_cron_file_without_any_file(tmp_path: Path) -> None:
    assert find_cron_file(None, [tmp_path, tmp_path / "absent"]) is None
    assert find_cron_file(None, []) is None


def test_default_search_dirs_are_the_stock_fallbacks() -> None:
    expected = (Path("/var/lib/tomcat7/webapps/ROOT"), Path("/var/app/current"))
    assert expected == DEFAULT_SEARCH_DIRS


# ---------------------------------------------------------------------------- messages


def _task() -> CronTask:
    (task,) = parse_cron_yaml(DOCS_EXAMPLE)
    return task


def test_task_message() -> None:
    body, attributes = task_message(_task(), datetime(2017, 3, 22, 23, 10, tzinfo=UTC))
    assert body == TASK_MESSAGE_BODY == "elasticbeanstalk scheduled job"
    assert attributes == {
        "beanstalk.sqsd.path": MessageAttribute("String", "/backup"),
        "beanstalk.sqsd.task_name": MessageAttribute("String", "backup-job"),
        "beanstalk.sqsd.scheduled_time": MessageAttribute("String", "2017-03-22 23:10:00 UTC"),
    }


def test_task_message_converts_to_utc_and_pads() -> None:
    plus_two = timezone(timedelta(hours=2))
    _, attributes = task_message(_task(), datetime(2024, 1, 1, 1, 5, 7, 999, tzinfo=plus_two))
    assert attributes["beanstalk.sqsd.scheduled_time"].string_value == "2023-12-31 23:05:07 UTC"
    _, attributes = task_message(_task(), datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert attributes["beanstalk.sqsd.scheduled_time"].string_value == "0999-01-02 03:04:05 UTC"


def test_task_message_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        task_message(_task(), datetime(2024, 1, 1))


def test_scheduled_time_round_trips_into_the_header() -> None:
    when = datetime(2024, 2, 29, 12, 30, tzinfo=UTC)
    _, attributes = task_message(_task(), when)
    stamp = attributes["beanstalk.sqsd.scheduled_time"].string_value
    assert stamp is not None
    assert scheduled_at_header(stamp) == "2024-02-29T12:30:00Z"


@pytest.mark.parametrize(
    ("value", "header"),
    [
        ("2017-03-22 23:10:00 UTC", "2017-03-22T23:10:00Z"),
        ("2024-02-29 00:00:59 UTC", "2024-02-29T00:00:59Z"),
        ("2023-02-29 00:00:00 UTC", None),  # not a leap year
        ("2017-03-22 24:00:00 UTC", None),
        ("2017-03-22 23:10:60 UTC", None),
        ("2017-13-01 00:00:00 UTC", None),
        ("2017-03-22T23:10:00Z", None),
        ("2017-03-22 23:10:00", None),
        ("2017-03-22 23:10:00 GMT", None),
        ("2017-03-22 23:10:00 +0000", None),
        ("2017-03-22 23:10 UTC", None),
        (" 2017-03-22 23:10:00 UTC", None),
        ("2017-03-22 23:10:00 UTC\n", None),
        ("２０１７-03-22 23:10:00 UTC", None),  # full-width digits
        ("", None),
    ],
)
def test_scheduled_at_header(value: str, header: str | None) -> None:
    assert scheduled_at_header(value) == header
