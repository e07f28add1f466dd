"""Periodic tasks: reading ``cron.yaml``, finding it, and the SQS message for one run.

Pure logic only -- no SQS or DynamoDB here. The schedule dialect lives in
:mod:`asqsd.periodic.schedule`; this module re-exports what callers need from it.

``cron.yaml`` rules as the stock daemon reads them, with the choices made where it is silent:

* ``version`` is required and must be the YAML integer ``1``. Stock looks the value up in a
  Ruby hash keyed by the integer 1, so the string ``"1"``, ``1.0`` and ``true`` are all
  refused; so are they here, with a hint for the quoted form.
* ``cron`` must be a list (an empty list is valid and means "no tasks"). Each entry must be a
  mapping with non-empty string ``name``, ``url`` and ``schedule``; other keys are ignored.
* ``name`` becomes an SQS attribute and an HTTP header value, so control characters are
  refused. ``url`` must be an absolute path (``/...``, not ``//...``) made of URL characters,
  percent-escapes allowed, a query string allowed, no fragment.
* Duplicate names: the last definition wins, as in stock (tasks are kept in a hash by name, so
  the task keeps the position of its first definition); each duplicate adds a warning.
* Every problem in the file is collected and raised together as :class:`CronError`, one line
  per problem naming the file, the entry (1-based index, and name when known) and the field.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from asqsd.message import TASK_NAME_ATTR, TASK_PATH_ATTR, TASK_TIME_ATTR, MessageAttribute
from asqsd.periodic.schedule import CronError, Schedule, parse_schedule, quoted

if TYPE_CHECKING:
    import yaml

__all__ = [
    "CRON_FILE_NAME",
    "DEFAULT_SEARCH_DIRS",
    "MAX_CRON_FILE_BYTES",
    "TASK_MESSAGE_BODY",
    "CronError",
    "CronTask",
    "Schedule",
    "find_cron_file",
    "load_cron_file",
    "parse_cron_yaml",
    "parse_schedule",
    "scheduled_at_header",
    "task_message",
]

CRON_FILE_NAME = "cron.yaml"
# Where stock looks after asking the platform for app_deploy_dir (get-config, which is I/O and
# therefore the caller's job: put that directory in front of these).
DEFAULT_SEARCH_DIRS: tuple[Path, ...] = (Path("/var/lib/tomcat7/webapps/ROOT"), Path("/var/app/current"))
# A real cron.yaml is a few hundred bytes; anything this big is a mistake, not a schedule.
MAX_CRON_FILE_BYTES = 1024 * 1024

TASK_MESSAGE_BODY = "elasticbeanstalk scheduled job"

_URL_CHAR = r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})"
_URL = re.compile(rf"/{_URL_CHAR}*(?:\?(?:{_URL_CHAR}|\?)*)?")
_SCHEDULED_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) UTC")


@dataclass(frozen=True, slots=True)
class CronTask:
    """One periodic task: its unique name, the path to POST to, and when to run it."""

    name: str
    url: str
    schedule: Schedule
    expression: str  # the schedule exactly as written in cron.yaml


def find_cron_file(explicit: Path | None, search_dirs: Sequence[Path]) -> Path | None:
    """Locate ``cron.yaml``: ``explicit`` if given, else the first ``search_dirs/cron.yaml``.

    An explicit path that does not exist raises :class:`CronError` (someone asked for it, so
    silently running without periodic tasks would hide the mistake). Without one, None means
    "no periodic tasks": stock then starts neither the scheduler nor leader election. Like
    stock, anything named ``cron.yaml`` counts, so a directory of that name fails at load time
    instead of being skipped.
    """
    if explicit is not None:
        if not explicit.exists():
            raise CronError([f"{explicit}: cron file not found"])
        return explicit
    for directory in search_dirs:
        candidate = directory / CRON_FILE_NAME
        if candidate.exists():
            return candidate
    return None


def load_cron_file(path: Path, warnings: list[str] | None = None) -> list[CronTask]:
    """Read and validate a ``cron.yaml`` file; see :func:`parse_cron_yaml`.

    Unreadable files, files over :data:`MAX_CRON_FILE_BYTES` and files that are not UTF-8
    raise :class:`CronError` as well. Messages name the file by ``path``.
    """
    source = str(path)
    try:
        with path.open("rb") as stream:
            # Read one byte past the limit instead of trusting stat(): it may be a pipe or grow.
            data = stream.read(MAX_CRON_FILE_BYTES + 1)
    except OSError as exc:
        raise CronError([f"{source}: cannot read: {exc.strerror or exc}"]) from None
    if len(data) > MAX_CRON_FILE_BYTES:
        raise CronError([_too_big(source)])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CronError([f"{source}: not valid UTF-8 (byte {exc.start})"]) from None
    return parse_cron_yaml(text, source, warnings)


def parse_cron_yaml(
    text: str, source: str = CRON_FILE_NAME, warnings: list[str] | None = None
) -> list[CronTask]:
    """Validate the text of a ``cron.yaml`` and return its tasks in file order.

    Raises :class:`CronError` listing every problem found (see the module docstring for the
    rules). Non-fatal findings -- duplicate task names -- are appended to ``warnings`` when a
    list is given, for the caller to log; this function does no logging itself.
    """
    document = _load_yaml(text, source)
    if not isinstance(document, dict):
        raise CronError([f"{source}: must be a mapping with 'version' and 'cron', got {_kind(document)}"])
    problems: list[str] = []
    _check_version(document, source, problems)
    tasks: dict[str, CronTask] = {}
    first_seen: dict[str, int] = {}
    duplicates: list[str] = []
    for index, entry in enumerate(_entries(document, source, problems), start=1):
        task = _parse_entry(entry, f"{source}: entry {index}", problems)
        if task is None:
            continue
        if task.name in first_seen:
            duplicates.append(
                f"{source}: entry {index} ({quoted(task.name)}): duplicate task name (first defined in entry "
                f"{first_seen[task.name]}); this later definition replaces it, as the stock daemon does"
            )
        first_seen.setdefault(task.name, index)
        tasks[task.name] = task
    if problems:
        raise CronError(problems)
    if warnings is not None:
        warnings.extend(duplicates)
    return list(tasks.values())


def task_message(task: CronTask, scheduled_at: datetime) -> tuple[str, dict[str, MessageAttribute]]:
    """The SQS body and message attributes that enqueue one run of ``task``, as stock sends them.

    ``scheduled_at`` must be timezone-aware; it is rendered in UTC as ``YYYY-MM-DD HH:MM:SS UTC``
    (Ruby's ``Time#to_s`` for a UTC time, which is what stock sends).
    """
    if scheduled_at.tzinfo is None or scheduled_at.utcoffset() is None:
        raise ValueError(f"scheduled_at must be timezone-aware, got naive {scheduled_at.isoformat()}")
    t = scheduled_at.astimezone(UTC)
    stamp = f"{t.year:04d}-{t.month:02d}-{t.day:02d} {t.hour:02d}:{t.minute:02d}:{t.second:02d} UTC"
    attributes = {
        TASK_PATH_ATTR: MessageAttribute("String", task.url),
        TASK_NAME_ATTR: MessageAttribute("String", task.name),
        TASK_TIME_ATTR: MessageAttribute("String", stamp),
    }
    return TASK_MESSAGE_BODY, attributes


def scheduled_at_header(value: str) -> str | None:
    """Turn ``2017-03-22 23:10:00 UTC`` into the header form ``2017-03-22T23:10:00Z``.

    Returns None unless ``value`` is exactly that format and a real date and time. (Stock
    feeds the attribute to Ruby's lenient ``Time.parse``; only our own format is accepted
    here, and the delivery side decides what to do with anything else.)
    """
    match = _SCHEDULED_TIME.fullmatch(value)
    if match is None:
        return None
    year, month, day, hour, minute, second = match.groups()
    try:
        datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
    except ValueError:  # 2017-02-30, 24:00:00 and leap seconds are not instants we produce
        return None
    return f"{year}-{month}-{day}T{hour}:{minute}:{second}Z"


def _too_big(source: str) -> str:
    return f"{source}: larger than {MAX_CRON_FILE_BYTES} bytes; refusing to parse it"


def _load_yaml(text: str, source: str) -> object:
    # len(text) bounds the encoded size from below, so huge inputs are refused before encoding.
    if len(text) > MAX_CRON_FILE_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_CRON_FILE_BYTES:
        raise CronError([_too_big(source)])
    import yaml  # only when there is a cron.yaml: most daemons have none

    try:
        document: object = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        raise CronError([f"{source}: invalid YAML: {_describe_yaml_error(exc)}"]) from None
    except RecursionError:  # PyYAML's composer recurses once per nesting level
        raise CronError([f"{source}: invalid YAML: nested too deeply"]) from None
    # Besides YAMLError, PyYAML's constructors let ValueError escape (e.g. the timestamp
    # 2001-13-01, or an integer with more digits than Python converts).
    except (yaml.YAMLError, ValueError, OverflowError) as exc:
        raise CronError([f"{source}: invalid YAML: {exc}"]) from None
    if document is None:
        raise CronError([f"{source}: file is empty; expected 'version: 1' and a 'cron' list"])
    return document


def _describe_yaml_error(exc: yaml.MarkedYAMLError) -> str:
    what = " ".join(part for part in (exc.context, exc.problem) if part) or "syntax error"
    mark = exc.problem_mark or exc.context_mark
    if mark is None:
        return what
    return f"{what} at line {mark.line + 1}, column {mark.column + 1}"


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    shown = quoted(value, 40) if isinstance(value, str) else repr(value)[:40]
    return f"{type(value).__name__} {shown}"


def _check_version(document: dict[object, object], source: str, problems: list[str]) -> None:
    if "version" not in document:
        problems.append(f"{source}: version is missing; add 'version: 1'")
        return
    version = document["version"]
    # type() rather than isinstance(): True is an int in Python but not 1 to the stock daemon.
    if type(version) is int and version == 1:
        return
    if isinstance(version, str) and version.strip() == "1":
        problems.append(
            f"{source}: version must be the number 1, not the string {quoted(version)}; remove the quotes"
        )
    else:
        problems.append(f"{source}: unsupported version {_kind(version)}; only version 1 exists")


def _entries(document: dict[object, object], source: str, problems: list[str]) -> list[object]:
    if "cron" not in document:
        problems.append(f"{source}: cron is missing; it must be a list of tasks")
        return []
    entries = document["cron"]
    if not isinstance(entries, list):
        problems.append(f"{source}: cron must be a list of tasks, got {_kind(entries)}")
        return []
    return entries


def _parse_entry(entry: object, label: str, problems: list[str]) -> CronTask | None:
    if not isinstance(entry, dict):
        problems.append(f"{label}: must be a mapping with name, url and schedule, got {_kind(entry)}")
        return None
    found = len(problems)
    name = _string_field(entry, "name", label, problems)
    if name is not None:
        if (bad := _control_character(name)) is not None:
            problems.append(f"{label}: name {quoted(name)}: contains the control character {bad}")
        label = f"{label} ({quoted(name)})"
    url = _string_field(entry, "url", label, problems)
    if url is not None and (url_problem := _url_problem(url)) is not None:
        problems.append(f"{label}: url {quoted(url)}: {url_problem}")
    expression = _string_field(entry, "schedule", label, problems)
    schedule = None
    if expression is not None:
        try:
            schedule = parse_schedule(expression)
        except CronError as exc:
            problems.extend(f"{label}: {problem}" for problem in exc.problems)
    if len(problems) > found or name is None or url is None or expression is None or schedule is None:
        return None
    return CronTask(name=name, url=url, schedule=schedule, expression=expression)


def _string_field(entry: dict[object, object], key: str, label: str, problems: list[str]) -> str | None:
    if key not in entry:
        problems.append(f"{label}: {key} is missing")
        return None
    value = entry[key]
    if not isinstance(value, str):
        problems.append(f"{label}: {key} must be a string, got {_kind(value)}")
        return None
    if not value.strip():
        problems.append(f"{label}: {key} is empty")
        return None
    return value


def _control_character(text: str) -> str | None:
    """The first character (as U+XXXX) that cannot go into an SQS attribute or HTTP header."""
    for char in text:
        code = ord(char)
        # C0/C1 controls and DEL break headers; surrogates and U+FFFE/F are refused by SQS.
        if code < 0x20 or 0x7F <= code <= 0x9F or 0xD800 <= code <= 0xDFFF or code in (0xFFFE, 0xFFFF):
            return f"U+{code:04X}"
    return None


def _url_problem(url: str) -> str | None:
    if not url.startswith("/"):
        return 'must be a path starting with "/" (it is joined onto http://localhost/)'
    if url.startswith("//"):
        return 'must not start with "//", which would name another host'
    for char in url:
        if char.isspace() or _control_character(char) is not None:
            return f"contains whitespace or a control character (U+{ord(char):04X}); percent-encode it"
    if "#" in url:
        return 'must not contain a "#" fragment, which is never sent to the server'
    if _URL.fullmatch(url) is None:
        return _url_character_problem(url)
    return None


def _url_character_problem(url: str) -> str:
    for position, char in enumerate(url):
        if char == "%" and re.fullmatch(r"%[0-9A-Fa-f]{2}", url[position : position + 3]) is None:
            return 'has a "%" that does not start a %XX escape'
        if not char.isascii() or (char != "%" and re.fullmatch(_URL_CHAR, char) is None and char != "?"):
            return f"contains {quoted(char)}, which is not allowed in a URL; percent-encode it"
    return "is not a valid URL path"
