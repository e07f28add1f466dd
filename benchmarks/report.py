"""Results: medians over runs, the targets (met / missed), JSON, a Markdown table and a PNG chart."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

RSS_GROWTH_ALLOWED = 1.10  # "independent of backlog": 1M-backlog peak within 10 % of the 10k one


def median_of(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Element-wise median of numeric leaves (recursing into dicts); other values from the first run."""
    if not runs:
        return {}
    first = runs[0]
    out: dict[str, Any] = {}
    for key, value in first.items():
        values = [run.get(key) for run in runs]
        if isinstance(value, bool):
            out[key] = all(bool(v) for v in values)
        elif isinstance(value, int | float):
            numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
            out[key] = _round(statistics.median(numbers)) if numbers else None
        elif isinstance(value, dict) and key not in ("params", "summary"):
            out[key] = median_of([v for v in values if isinstance(v, dict)])
        else:
            out[key] = value
    return out


def _round(value: float) -> float:
    return round(value, 4) if isinstance(value, float) else value


@dataclass(frozen=True, slots=True)
class Target:
    """One goal from the issue, checked against the median result of a scenario."""

    label: str
    scenarios: tuple[str, ...]
    threshold: str
    measure: Callable[[dict[str, dict[str, Any]]], float | None]
    passes: Callable[[float], bool]
    unit: str = ""


def _get(results: dict[str, dict[str, Any]], scenario: str, *path: str) -> Any:
    node: Any = results.get(scenario)
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _max_rss(results: dict[str, dict[str, Any]]) -> float | None:
    values = [r.get("daemon_peak_rss_mb") for r in results.values()]
    numbers = [v for v in values if isinstance(v, int | float)]
    return max(numbers) if numbers else None


def _rss_ratio(results: dict[str, dict[str, Any]]) -> float | None:
    small = _get(results, "backlog_10k", "daemon_peak_rss_mb")
    big = _get(results, "backlog_1m", "daemon_peak_rss_mb")
    return round(big / small, 3) if small and big is not None else None


TARGETS: tuple[Target, ...] = (
    Target(
        "null worker throughput",
        ("null",),
        "≥ 6,000 msgs/s",
        lambda r: _get(r, "null", "msgs_per_s"),
        lambda v: v >= 6000,
        " msgs/s",
    ),
    Target(
        "null worker daemon CPU per message",
        ("null",),
        "≤ 120 µs",
        lambda r: _get(r, "null", "daemon_cpu_us_per_msg"),
        lambda v: v <= 120,
        " µs",
    ),
    Target(
        "fixed 20 ms: share of 50 ÷ 0.020 = 2,500 msgs/s",
        ("fixed20",),
        "≥ 97 %",
        lambda r: _get(r, "fixed20", "pct_of_limit"),
        lambda v: v >= 97,
        " %",
    ),
    Target(
        "heavy tail: share of 50 ÷ mean job time",
        ("heavy",),
        "≥ 93 %",
        lambda r: _get(r, "heavy", "pct_of_limit"),
        lambda v: v >= 93,
        " %",
    ),
    Target(
        "SQS calls per message at saturation (null worker)",
        ("null",),
        "≤ 0.22",
        lambda r: _get(r, "null", "sqs_calls_per_msg", "total"),
        lambda v: v <= 0.22,
    ),
    Target(
        "idle: ReceiveMessage calls per receiver per minute",
        ("idle",),
        "≤ 3",
        lambda r: _get(r, "idle", "receive_calls_per_receiver_per_min"),
        lambda v: v <= 3.0 + 1e-9,
    ),
    Target(
        "daemon peak RSS (all scenarios run)",
        ("null", "fixed20", "heavy", "slow", "idle", "backlog_10k", "backlog_1m"),
        "≤ 80 MB",
        _max_rss,
        lambda v: v <= 80,
        " MB",
    ),
    Target(
        "null worker: daemon start-up, process start → first ReceiveMessage",
        ("null",),
        "≤ 0.25 s",
        lambda r: _get(r, "null", "daemon_startup_s"),
        lambda v: v <= 0.25,
        " s",
    ),
    Target(
        "null worker: daemon peak RSS",
        ("null",),
        "≤ 50 MB",
        lambda r: _get(r, "null", "daemon_peak_rss_mb"),
        lambda v: v <= 50,
        " MB",
    ),
    Target(
        "peak RSS, 1M backlog ÷ 10k backlog",
        ("backlog_10k", "backlog_1m"),
        f"≤ {RSS_GROWTH_ALLOWED:.2f} (flat)",
        _rss_ratio,
        lambda v: v <= RSS_GROWTH_ALLOWED,
        "×",
    ),
    Target(
        "slow jobs (2× visibility): duplicates",
        ("slow",),
        "0",
        lambda r: _get(r, "slow", "duplicates"),
        lambda v: v == 0,
    ),
)


SMOKE = "smoke"  # the status of every target in a --quick run: too small to judge


def evaluate(results: dict[str, dict[str, Any]], *, quick: bool = False) -> list[dict[str, Any]]:
    """Each target as ``{label, threshold, measured, status}``; status met / missed / n/a.

    A ``--quick`` run is a smoke test (small N, short idle): its figures are shown but never
    judged, so every target it measured gets the status ``smoke``.
    """
    rows = []
    for target in TARGETS:
        needed = target.scenarios if len(target.scenarios) <= 2 else ()
        ran = all(name in results for name in needed) and any(name in results for name in target.scenarios)
        value = target.measure(results) if ran else None
        status = "n/a" if value is None else "met" if target.passes(float(value)) else "missed"
        if quick and value is not None:
            status = SMOKE
        rows.append(
            {
                "target": target.label,
                "threshold": target.threshold,
                "measured": value,
                "unit": target.unit,
                "status": status,
            }
        )
    return rows


# --- Markdown --------------------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 0, suffix: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float | int) and not isinstance(value, bool):
        return f"{value:,.{digits}f}{suffix}"
    return str(value)


_OP_SHORT = MappingProxyType(
    {
        "ReceiveMessage": "recv",
        "DeleteMessageBatch": "del",
        "ChangeMessageVisibilityBatch": "cmv",
        "DeleteMessage": "del1",
        "ChangeMessageVisibility": "cmv1",
        "GetQueueAttributes": "attr",
        "GetQueueUrl": "url",
    }
)


def _calls(per_msg: dict[str, float] | None, calls: dict[str, int] | None, per_msg_mode: bool) -> str:
    source: dict[str, Any] | None = per_msg if per_msg_mode else calls
    if not source:
        return "n/a"
    total = source.get("total")
    parts = [f"{_OP_SHORT.get(op, op)} {_num(n)}" for op, n in sorted(source.items()) if op != "total" and n]
    return f"**{_num(total)}** ({', '.join(parts)})" if parts else _num(total)


def _num(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    size = abs(value)
    if isinstance(value, int) or size >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if size >= 10 else f"{value:.3f}"


def scenario_table(results: dict[str, dict[str, Any]]) -> str:
    """One row per scenario (medians)."""
    header = (
        "| scenario | delivered | msgs/s | limit | % of limit | e2e p50 / p99 ms | daemon CPU µs/msg "
        "(CPU %) | start-up s | peak RSS MB | SQS calls per msg (by op) | dups | errors (sqs/daemon) |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|\n"
    )
    lines = []
    for name, r in results.items():
        latency = r.get("latency_ms") or {}
        idle = r.get("kind") == "idle"
        calls = (
            _calls(None, _per_min(r), False) + " per min"
            if idle
            else _calls(r.get("sqs_calls_per_msg"), r.get("sqs_calls"), True)
        )
        exit_info = r.get("daemon_exit") or {}
        complete = "" if r.get("complete", True) else " ⚠ incomplete"
        lines.append(
            "| "
            + " | ".join(
                [
                    f"{name} ({r.get('title', '')}){complete}",
                    _fmt(r.get("delivered")),
                    _fmt(r.get("msgs_per_s")),
                    _fmt(r.get("limit_msgs_per_s")),
                    _fmt(r.get("pct_of_limit"), 1, " %"),
                    f"{_fmt(latency.get('p50'), 1)} / {_fmt(latency.get('p99'), 1)}",
                    f"{_fmt(r.get('daemon_cpu_us_per_msg'))} ({_fmt(r.get('daemon_cpu_pct'))} %)",
                    _fmt(r.get("daemon_startup_s"), 3),
                    _fmt(r.get("daemon_peak_rss_mb"), 1),
                    calls,
                    _fmt(r.get("duplicates")),
                    f"{_fmt(r.get('sqs_errors'))} / {_fmt(exit_info.get('errors'))}",
                ]
            )
            + " |"
        )
    return header + "\n".join(lines) + "\n"


def _per_min(r: dict[str, Any]) -> dict[str, Any] | None:
    calls = r.get("sqs_calls")
    window = r.get("window_s")
    if not calls or not window:
        return None
    return {op: round(n * 60 / window, 1) for op, n in calls.items()}


def targets_table(rows: list[dict[str, Any]]) -> str:
    out = "| target | threshold | measured (median) | status |\n|---|---|---:|---|\n"
    for row in rows:
        value = row["measured"]
        shown = "n/a" if value is None else f"{_num(value)}{row['unit']}"
        mark = {"met": "✅ met", "missed": "❌ missed", SMOKE: "smoke run, not judged"}.get(
            row["status"], "— n/a"
        )
        out += f"| {row['target']} | {row['threshold']} | {shown} | {mark} |\n"
    return out


def markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    medians = {name: s["median"] for name, s in result["scenarios"].items()}
    lines = [
        *([SMOKE_BANNER, ""] if meta.get("quick") else []),
        f"Benchmark {meta['timestamp']} — {meta['runs']} run(s) per scenario, medians; "
        f"{meta['cpus']} CPUs, Python {meta['python']}, {meta['mode']}",
        "",
        _placement_line(meta.get("placement")),
        "",
        f"Command: `{meta['command']}`",
        "",
        scenario_table(medians),
        targets_table(result["targets"]),
    ]
    extras = _extras(medians)
    if extras:
        lines += ["", *extras]
    return "\n".join(lines)


SMOKE_BANNER = (
    "**Smoke run (`--quick`)**: small message counts and a short idle phase. The figures show that "
    "every scenario runs; they are not measurements, and no target is judged on them."
)


def _placement_line(placement: dict[str, Any] | None) -> str:
    if not placement or placement.get("placement") == "shared":
        return "Placement: shared (the scheduler places every process)"
    return (
        f"Placement: split (daemon on CPUs {placement['daemon_cpus']}, worker on {placement['worker_cpus']}, "
        f"emulator at nice +{placement['emulator_nice']})"
    )


def _extras(medians: dict[str, dict[str, Any]]) -> list[str]:
    out = []
    for name, r in medians.items():
        others = r.get("other_cpu_pct") or {}
        bits = [f"{k} {_fmt(v)} %" for k, v in others.items() if v is not None]
        if r.get("foreign_cpu_pct") is not None:
            bits.append(f"other people's processes {_fmt(r.get('foreign_cpu_pct'))} %")
        if bits:
            out.append(f"- {name}: CPU besides the daemon, % of one core: {', '.join(bits)}")
        if r.get("limit_by_measured_service"):
            service = _fmt(r.get("worker_service_mean_ms"), 2)
            busy = _fmt(r.get("connections_busy_pct"), 1)
            gaps = r.get("worker_idle_gap_ms") or {}
            out.append(
                f"- {name}: the worker's measured mean job time was {service} ms (limit at that time"
                f" {_fmt(r.get('limit_by_measured_service'))} msgs/s); the daemon kept {busy} % of the"
                f" {r['params']['connections']} connections busy (steady state); a connection's idle gap"
                f" between a response and its next request: p50 {_fmt(gaps.get('p50'), 2)} ms,"
                f" p99 {_fmt(gaps.get('p99'), 2)} ms"
            )
        if r.get("kind") == "idle":
            out.append(
                f"- idle: {_fmt(r.get('receive_calls_per_receiver_per_min'), 2)} ReceiveMessage calls"
                f" per receiver per minute ({r.get('receivers_assumed')} receivers assumed), daemon CPU "
                f"{_fmt(r.get('daemon_cpu_pct'), 2)} % of a core"
            )
    return out


# --- files -----------------------------------------------------------------------------------------
def write_all(result: dict[str, Any], out_dir: Path, stamp: str, chart: bool = True) -> dict[str, Path]:
    """``<stamp>.json``, ``latest.json``, ``<stamp>.md``, ``latest.md`` and ``latest.png`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / f"{stamp}.json", "markdown": out_dir / f"{stamp}.md"}
    text = json.dumps(result, indent=2, sort_keys=False, default=str)
    paths["json"].write_text(text)
    (out_dir / "latest.json").write_text(text)
    md = markdown(result)
    paths["markdown"].write_text(md)
    (out_dir / "latest.md").write_text(md)
    if chart:
        png = out_dir / f"{stamp}.png"
        if draw_chart(result, png):
            (out_dir / "latest.png").write_bytes(png.read_bytes())
            paths["png"] = out_dir / "latest.png"
    return paths


def draw_chart(result: dict[str, Any], path: Path) -> bool:
    """Four panels: throughput vs limit, daemon CPU/msg, latency p50/p99, RSS over time (backlogs)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    medians = {name: s["median"] for name, s in result["scenarios"].items()}
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    _panel_throughput(axes[0][0], medians)
    _panel_cpu(axes[0][1], medians)
    _panel_latency(axes[1][0], medians)
    _panel_rss(axes[1][1], result["scenarios"])
    meta = result["meta"]
    title = f"asqsd benchmarks {meta['timestamp']} ({meta['runs']} run(s), medians; {meta['cpus']} CPUs)"
    if meta.get("quick"):
        title = f"SMOKE RUN (--quick): not measurements, no target judged\n{title}"
    fig.suptitle(title, color="tab:red" if meta.get("quick") else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _panel_throughput(ax: Any, medians: dict[str, dict[str, Any]]) -> None:
    names = [n for n, r in medians.items() if r.get("msgs_per_s") is not None]
    rates = [medians[n]["msgs_per_s"] for n in names]
    ax.bar(names, rates, color="tab:blue", label="measured")
    for i, name in enumerate(names):
        limit = medians[name].get("limit_msgs_per_s")
        if limit:
            ax.plot([i - 0.4, i + 0.4], [limit, limit], color="black", linestyle="--")
            ax.annotate(f"limit {limit:,.0f}", (i, limit), ha="center", va="bottom", fontsize=8)
        ax.annotate(f"{rates[i]:,.0f}", (i, rates[i] / 2), ha="center", color="white", fontsize=8)
    if "null" in names:
        _target_over(ax, names.index("null"), 6000, "null target ≥ 6,000")
    ax.set_title("throughput (msgs/s)")
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelsize=8)


def _panel_cpu(ax: Any, medians: dict[str, dict[str, Any]]) -> None:
    names = [
        n
        for n, r in medians.items()
        if r.get("daemon_cpu_us_per_msg") is not None and r.get("kind") in ("drain", "backlog")
    ]
    values = [medians[n]["daemon_cpu_us_per_msg"] for n in names]
    ax.bar(names, values, color="tab:orange")
    if "null" in names:
        _target_over(ax, names.index("null"), 120, "null target ≤ 120 µs")
    for i, value in enumerate(values):
        ax.annotate(f"{value:,.0f}", (i, value), ha="center", va="bottom", fontsize=8)
    ax.set_title("daemon CPU per message (µs)")
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelsize=8)


def _panel_latency(ax: Any, medians: dict[str, dict[str, Any]]) -> None:
    names = [
        n
        for n, r in medians.items()
        if (r.get("latency_ms") or {}).get("p50") is not None and r.get("kind") in ("drain", "slow")
    ]
    p50 = [medians[n]["latency_ms"]["p50"] for n in names]
    p99 = [medians[n]["latency_ms"]["p99"] for n in names]
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], p50, width=0.4, label="p50")
    ax.bar([x + 0.2 for x in xs], p99, width=0.4, label="p99")
    ax.set_xticks(list(xs), names, fontsize=8)
    for x, (low, high) in enumerate(zip(p50, p99, strict=True)):
        ax.annotate(f"{low:,.0f}", (x - 0.2, low), ha="center", va="bottom", fontsize=7)
        ax.annotate(f"{high:,.0f}", (x + 0.2, high), ha="center", va="bottom", fontsize=7)
    ax.set_yscale("log")
    # Plain millisecond labels at 1-2-5 steps: a log axis labelled 10^1, 10^2 is hard to read.
    from matplotlib.ticker import FixedLocator, NullFormatter, StrMethodFormatter

    steps = [m * 10**e for e in range(-1, 6) for m in (1, 2, 5)]
    ax.yaxis.set_major_locator(FixedLocator(steps))
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.4g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    if p50 and p99:
        ax.set_ylim(min(p50) / 1.6, max(p99) * 1.6)
    ax.set_ylabel("ms")
    ax.set_title("end-to-end latency, enqueue → worker (ms, log scale)")
    ax.legend(fontsize=8)


_LINE_STYLES = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"))


def _target_over(ax: Any, index: int, value: float, label: str) -> None:
    """A target line over one scenario's bar only: it belongs to that scenario, not to the others."""
    ax.plot(
        [index - 0.45, index + 0.45], [value, value], color="tab:red", linestyle=":", linewidth=2, label=label
    )


def _panel_rss(ax: Any, scenarios: dict[str, dict[str, Any]]) -> None:
    drawn = 0
    for name, data in scenarios.items():
        runs = data.get("runs") or []
        if not runs or not runs[0].get("daemon_rss_series"):
            continue
        if data["median"].get("kind") != "backlog" and name != "null":
            continue
        series = runs[0]["daemon_rss_series"]
        # Lines that lie on top of each other (flat RSS at the same level) stay visible: each
        # gets its own dash pattern, marker and a narrower width than the one drawn before it.
        style = _LINE_STYLES[drawn % len(_LINE_STYLES)]
        ax.plot(
            [t for t, _ in series],
            [mb for _, mb in series],
            label=f"{name} (run 1)",
            linestyle=style[0],
            marker=style[1],
            markevery=max(1, len(series) // 8),
            linewidth=3.0 - 0.8 * (drawn % 3),
            alpha=0.85,
        )
        drawn += 1
    ax.axhline(80, color="tab:red", linestyle=":", linewidth=2, label="target ≤ 80 MB (all scenarios)")
    ax.axhline(50, color="tab:purple", linestyle=":", linewidth=2, label="null worker target ≤ 50 MB")
    ax.set_ylim(bottom=0, top=max(90.0, ax.get_ylim()[1]))  # the target line clear of the frame
    ax.set_xlabel("seconds since measurement start")
    startup = (scenarios.get("null") or {}).get("median", {}).get("daemon_startup_s")
    shown = "" if startup is None else f"; null worker start-up {startup:.3f} s (target ≤ 0.25 s)"
    ax.set_title(f"daemon RSS (MB){shown}")
    ax.legend(fontsize=8)
