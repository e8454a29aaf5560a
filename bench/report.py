"""Printing a run: the comparison table, jobbroker's extra measurements and the targets."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.scenarios import PeerResult

COLUMNS = (
    # key, title, unit, higher is better
    ("seq", "enqueue 1 by 1", "jobs/s", True),
    ("inflight", "enqueue 100 in flight", "jobs/s", True),
    ("bulk", "bulk enqueue", "jobs/s", True),
    ("processing", "processing, 1 worker", "jobs/s", True),
    ("p50", "add->start p50", "ms", False),
    ("p99", "add->start p99", "ms", False),
)
PYTHON_PEERS = ("arq", "dramatiq", "celery", "rq")


def number(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def ratio(jobbroker: float | None, peer: float | None, higher_better: bool) -> float | None:
    """jobbroker's advantage over the peer: > 1 means jobbroker does better."""
    if not jobbroker or not peer:
        return None
    return jobbroker / peer if higher_better else peer / jobbroker


def cell(result: PeerResult, key: str, base: PeerResult | None, higher: bool) -> str:
    if key in result.errors:
        return "error"
    if key not in result.values:
        return "-"
    value = result.values[key]
    if value is None:
        return "n/a"
    text = number(value)
    if base is not None and base is not result:
        r = ratio(base.values.get(key), value, higher)
        if r is not None:
            text += f" ({r:.2f}x)"
    return text


def table(results: Sequence[PeerResult], setups: dict[str, str]) -> str:
    base = next((r for r in results if r.name == "jobbroker"), None)
    header = ["", *[f"{title} ({unit})" for _, title, unit, _ in COLUMNS]]
    rows = [header]
    for result in results:
        cells = [cell(result, key, base, higher) for key, _, _, higher in COLUMNS]
        rows.append([result.name, *cells])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("| " + " | ".join(text.ljust(widths[i]) for i, text in enumerate(row)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    legend = [
        "",
        "(N.NNx) = jobbroker's ratio to that peer: jobbroker/peer for rates, peer/jobbroker",
        "for latencies, so > 1 means jobbroker does better. n/a: the library has no such API.",
        "Workers: " + "; ".join(f"{name}: {setup}" for name, setup in setups.items()),
    ]
    return "\n".join(lines + legend)


def errors(results: Sequence[PeerResult]) -> str:
    lines = []
    for result in results:
        for key, message in result.errors.items():
            first = message.strip().splitlines()
            lines.append(f"{result.name} {key}: {' / '.join(first[:1] + first[-2:])}")
    return "\n".join(dict.fromkeys(lines))


@dataclass
class Target:
    name: str
    ok: bool | None
    detail: str

    def line(self) -> str:
        verdict = "SKIP" if self.ok is None else ("PASS" if self.ok else "FAIL")
        return f"{verdict}  {self.name}: {self.detail}"


def targets(results: Sequence[PeerResult], extras: dict[str, Any]) -> list[Target]:
    by_name = {r.name: r for r in results}
    jb = by_name.get("jobbroker")
    bull = by_name.get("bullmq")
    out: list[Target] = []

    def versus(key: str, title: str) -> None:
        value = jb.values.get(key) if jb else None
        peer = bull.values.get(key) if bull else None
        r = ratio(value, peer, True)
        if r is None:
            out.append(Target(title, None, "needs jobbroker and bullmq in the run"))
        else:
            assert value is not None
            assert peer is not None
            out.append(
                Target(title, r >= 1.0, f"{number(value)} vs {number(peer)} jobs/s = {r:.2f}x")
            )

    versus("processing", "processing >= BullMQ")
    versus("bulk", "bulk enqueue >= BullMQ addBulk")

    single = jb.values.get("inflight") if jb else None
    floor = extras.get("transport", {}).get("100", {}).get("per_s")
    pythons = {
        name: by_name[name].values.get("inflight")
        for name in PYTHON_PEERS
        if name in by_name and by_name[name].values.get("inflight")
    }
    if not single or not floor:
        out.append(Target("Add, 100 in flight >= 0.8x bare unary", None, "not measured"))
    else:
        share = single / floor
        detail = f"{number(single)} vs {number(floor)} calls/s = {share:.2f}x"
        out.append(Target("Add, 100 in flight >= 0.8x bare unary", share >= 0.8, detail))
    if not single or not pythons:
        out.append(Target("Add, 100 in flight above every Python peer", None, "not measured"))
    else:
        best, best_value = max(pythons.items(), key=lambda item: item[1] or 0.0)
        assert best_value is not None
        out.append(
            Target(
                "Add, 100 in flight above every Python peer",
                single > best_value,
                f"{number(single)} vs best {best} {number(best_value)} jobs/s",
            )
        )

    pickup = extras.get("pickup_200")
    if pickup is None:
        out.append(Target("pickup at 200/s: p50 <= 2 ms, p99 <= 5 ms", None, "not measured"))
    else:
        p50, p99 = pickup["p50_ms"], pickup["p99_ms"]
        out.append(
            Target(
                "pickup at 200/s: p50 <= 2 ms, p99 <= 5 ms",
                p50 <= 2.0 and p99 <= 5.0,
                f"p50 {p50:.2f} ms, p99 {p99:.2f} ms",
            )
        )

    idle = extras.get("idle")
    if idle is None:
        out.append(Target("1,000 idle subscribers < 100 MB", None, "not measured"))
    else:
        delta = idle["rss_delta_mb"]
        out.append(
            Target(
                f"{idle['subscribers']:,} idle subscribers < 100 MB",
                delta < 100 and idle["subscribers"] >= 1000,
                f"broker RSS +{delta:.1f} MB ({idle['rss_after_mb']:.0f} MB in all)",
            )
        )
    return out


def latency_line(title: str, summary: dict[str, Any] | None) -> str:
    if not summary or "p50_ms" not in summary:
        return f"{title}: {error_of(summary)}"
    return (
        f"{title}: p50 {summary['p50_ms']:.2f} ms, p99 {summary['p99_ms']:.2f} ms, "
        f"max {summary['max_ms']:.2f} ms ({summary['samples']:,} jobs)"
    )


def error_of(section: dict[str, Any] | None) -> str:
    if not section:
        return "not measured"
    return "error: " + str(section.get("error", section)).strip().splitlines()[0]


def extras_text(extras: dict[str, Any], results: Sequence[PeerResult]) -> list[str]:
    lines = ["jobbroker alone:"]
    lines.append(
        "- "
        + latency_line(
            "pickup (Add acknowledged -> handler start) at 200/s", extras.get("pickup_200")
        )
    )
    fast = extras.get("pickup_2000", {})
    text = latency_line("pickup at 2,000/s", fast.get("pickup") or fast)
    if "rate" in fast:
        text += f"; rate reached {number(fast['rate'])}/s, {fast['failed_adds']} adds failed"
    lines.append("- " + text)
    if "add_to_start" in fast:
        lines.append("- " + latency_line("add->start at 2,000/s", fast["add_to_start"]))
    progress = extras.get("progress", {})
    if "events_per_s" in progress:
        lines.append(
            f"- progress through ReportProgress -> StreamProgress: "
            f"{number(progress['events_per_s'])} events/s ({progress['jobs']} jobs reporting, "
            f"each report flushed; {progress['events']:,} of {progress['reports']:,} reports "
            "arrived)"
        )
        lines.append("  " + latency_line("report -> subscriber", progress["latency"]))
    else:
        lines.append(f"- progress: {error_of(progress)}")
    idle = extras.get("idle", {})
    if "rss_delta_mb" in idle:
        lines.append(
            f"- {idle['subscribers']:,} idle StreamProgress subscribers on one broker: RSS "
            f"{idle['rss_before_mb']:.1f} -> {idle['rss_after_mb']:.1f} MB "
            f"(+{idle['rss_delta_mb']:.1f} MB); CPU while idle {idle['cpu_idle_before_pct']:.1f}% "
            f"without them, {idle['cpu_idle_after_pct']:.1f}% with them"
        )
    else:
        lines.append(f"- idle subscribers: {error_of(idle)}")
    memory = extras.get("memory", {})
    if "per_waiting_job" in memory:
        lines.append(
            f"- Redis memory per waiting job: {memory['per_waiting_job']:.0f} B (used_memory "
            f"delta / {memory['jobs']:,}), {memory['per_waiting_job_keys']:.0f} B (MEMORY USAGE "
            "of the queue's keys)"
        )
        lines.append(
            f"- per kept completed job: {memory['per_completed_job']:.0f} B (used_memory), "
            f"{memory['per_completed_job_keys']:.0f} B (MEMORY USAGE); "
            f"{memory['kept_completed']:,} completed jobs kept"
        )
    else:
        lines.append(f"- memory: {error_of(memory)}")
    brokers = extras.get("brokers", {})
    if "two" in brokers:
        one, two = brokers["one"], brokers["two"]
        rate_one = one["jobs"] / one["seconds"]
        rate_two = two["jobs"] / two["seconds"]
        lines.append(
            f"- processing, 2 worker processes: 1 broker {number(rate_one)} jobs/s, 2 brokers "
            f"{number(rate_two)} jobs/s ({rate_two / rate_one:.2f}x); each worker talks to one "
            "broker (the Worker takes one target), the producer to both (comma-separated)"
        )
    else:
        lines.append(f"- brokers: {error_of(brokers)}")
    floor = extras.get("transport", {})
    jb = next((r for r in results if r.name == "jobbroker"), None)
    single = jb.values.get("inflight") if jb else None
    if "100" in floor:
        text = (
            f"- bare grpc.aio unary between two processes: {number(floor['64']['per_s'])} "
            f"calls/s (64 in flight), {number(floor['100']['per_s'])} calls/s (100 in flight)"
        )
        if single:
            text += f"; jobbroker Add at 100 in flight = {single / floor['100']['per_s']:.2f}x"
        lines.append(text)
    else:
        lines.append(f"- transport floor: {error_of(floor)}")
    durable = extras.get("durability", {})
    if "on" in durable:
        off, on = durable["off"], durable["on"]
        lines.append(
            f"- durability {' '.join(durable['flags'])} (private primary + 1 replica): Add one "
            f"by one {number(on['seq'])}/s vs {number(off['seq'])}/s off "
            f"({on['seq'] / (off['seq'] or 1):.2f}x); 100 in flight {number(on['inflight'])}/s "
            f"vs {number(off['inflight'])}/s ({on['inflight'] / (off['inflight'] or 1):.2f}x)"
        )
    else:
        lines.append(f"- durability option: n/a ({durable.get('note', error_of(durable))})")
    return lines


def render(
    info: dict[str, Any],
    results: Sequence[PeerResult],
    setups: dict[str, str],
    extras: dict[str, Any],
    verdicts: Sequence[Target],
    sizes: Any,
) -> str:
    m = info["machine"]
    out = [
        "",
        f"machine: {m['nproc']} cores, {m['cpu']}, {m['ram_gib']} GiB; load at start "
        f"{m['load_at_start']}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()),
        f"command: {info['command']}",
        "",
        table(results, setups),
    ]
    problems = errors(results)
    if problems:
        out += ["", "errors:", problems]
    if extras:
        out += ["", *extras_text(extras, results)]
    out += ["", "targets:", *(t.line() for t in verdicts)]
    return "\n".join(out)
