"""Printing a run: the comparison table, jobbroker's extra measurements and the targets.

python -m bench.report RUN.json      # print a run saved with ./bench/run --json again
"""

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
    ("processing", "processing, kept", "jobs/s", True),
    ("processing_removed", "processing, removed", "jobs/s", True),
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
    lines = grid(rows)
    legend = [
        "",
        "(N.NNx) = jobbroker's ratio to that peer: jobbroker/peer for rates, peer/jobbroker",
        "for latencies, so > 1 means jobbroker does better. n/a: the library has no such API;",
        "-: not measured. Processing: jobs / seconds from the worker process's spawn to its last",
        "job done, completed jobs kept, and again removed on complete (jobbroker and BullMQ).",
        "Workers: " + "; ".join(f"{name}: {setup}" for name, setup in setups.items()),
        "Load average (1 min) as each column started: " + loads(results),
    ]
    return "\n".join(lines + legend)


def loads(results: Sequence[PeerResult]) -> str:
    parts = []
    for key, title, _, _ in COLUMNS:
        if key == "p99":
            continue
        found = [
            f"{r.name} {r.details['load'][key]:.1f}"
            for r in results
            if key in r.details.get("load", {})
        ]
        if found:
            parts.append(f"{title.removesuffix(' p50')}: {', '.join(found)}")
    return "; ".join(parts)


def processing_table(results: Sequence[PeerResult]) -> str:
    """Each peer's processing figures side by side: the rate from the worker process's spawn,
    from ready, steady; and where the CPU went, in µs per job."""
    header = [
        "",
        "jobs",
        "from start",
        "from ready",
        "steady",
        "start-up s",
        "worker",
        "broker",
        "Redis",
        "EVALSHA",
        "sum",
        "cores busy",
        "load",
    ]
    rows = [header]
    for result in results:
        for key, variant in (("processing", "kept"), ("processing_removed", "removed")):
            figures = result.details.get(key)
            if not figures:
                continue
            cpu = figures["cpu"]
            broker = cpu.get("broker", {}).get("us_per_job")
            redis_us = cpu["redis"]["us_per_job"]
            evalsha = sum(
                c["us_per_job"] for c in cpu["redis_commands"] if c["command"] in SCRIPT_COMMANDS
            )
            total = figures["worker_us_per_job"] + (broker or 0.0) + redis_us
            rows.append(
                [
                    f"{result.name}, {variant}",
                    f"{figures['jobs']:,}",
                    number(figures["from_start"]),
                    number(figures["from_ready"]),
                    number(figures["steady"]),
                    f"{figures['start_s']:.2f}",
                    f"{figures['worker_us_per_job']:.0f}",
                    "-" if broker is None else f"{broker:.0f}",
                    f"{redis_us:.0f}",
                    f"{evalsha:.0f}",
                    f"{total:.0f}",
                    f"{total * figures['from_ready'] / 1e6:.2f}",
                    f"{figures['load']:.1f}",
                ]
            )
    legend = [
        "",
        "Rates in jobs/s: from start (the runner spawning the worker process), from ready (the",
        "library imported, the worker about to be made), steady (first handler start to last job",
        "done). CPU in µs per job: worker (its own CPU from ready to the last job), broker",
        "(/proc, spawn to exit), Redis (INFO cpu of the peer's private server, spawn to exit),",
        "EVALSHA (the scripts' time, INFO commandstats: time inside the command, so on a loaded",
        "machine it counts the moments Redis waited for a core too and can exceed its CPU);",
        "sum = worker + broker + Redis. Cores busy = sum x the rate from ready: how much of the",
        "machine's 2 cores the processes kept busy together (below 2: they took turns, or others",
        "had the cores). Celery's worker: its main process only (the tasks ran in its pool's",
        "children). Load: the 1-minute load average at the end.",
    ]
    return "\n".join(grid(rows) + legend)


SCRIPT_COMMANDS = ("evalsha", "eval", "fcall", "evalsha_ro", "eval_ro")


def commands_text(results: Sequence[PeerResult]) -> list[str]:
    """Where Redis' time went in each processing run: the top commands per job."""
    lines = []
    for result in results:
        for key, variant in (("processing", "kept"), ("processing_removed", "removed")):
            figures = result.details.get(key)
            if not figures or result.name not in ("jobbroker", "bullmq"):
                continue
            parts = [
                f"{c['command']} {c['calls_per_job']:.2f}x {c['us_per_call']:.1f} µs"
                f" = {c['us_per_job']:.1f}"
                for c in figures["cpu"]["redis_commands"]
            ]
            lines.append(f"- {result.name}, {variant}: " + "; ".join(parts))
    return lines


def grid(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("| " + " | ".join(text.ljust(widths[i]) for i, text in enumerate(row)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return lines


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
    """The issue's targets, each from figures measured side by side in this run."""
    by_name = {r.name: r for r in results}
    jb = by_name.get("jobbroker")
    bull = by_name.get("bullmq")
    out: list[Target] = []

    def versus(key: str, field: str, title: str) -> None:
        mine = (jb.details.get(key) or {}).get(field) if jb else None
        theirs = (bull.details.get(key) or {}).get(field) if bull else None
        r = ratio(mine, theirs, True)
        if r is None:
            out.append(Target(title, None, "needs jobbroker and bullmq in the run"))
            return
        assert mine is not None
        assert theirs is not None
        out.append(Target(title, r >= 1.0, f"{number(mine)} vs {number(theirs)} jobs/s = {r:.2f}x"))

    for key, variant in (("processing", "kept"), ("processing_removed", "removed on complete")):
        versus(key, "from_start", f"processing, {variant}, from process start >= BullMQ")
        versus(key, "from_ready", f"processing, {variant}, from ready >= BullMQ")

    mine_lat = jb.details.get("latency", {}).get("add_to_start") if jb else None
    bull_lat = bull.details.get("latency", {}).get("add_to_start") if bull else None
    for field, name in (("p50_ms", "p50"), ("p99_ms", "p99")):
        title = f"add->start {name} at 200/s <= BullMQ's"
        if not mine_lat or not bull_lat:
            out.append(Target(title, None, "needs jobbroker and bullmq in the run"))
            continue
        mine_ms, theirs_ms = mine_lat[field], bull_lat[field]
        out.append(Target(title, mine_ms <= theirs_ms, f"{mine_ms:.2f} vs {theirs_ms:.2f} ms"))

    fast = extras.get("pickup_2000", {}).get("pickup")
    if not fast:
        out.append(Target("pickup p99 at 2,000/s <= 5 ms", None, "not measured"))
    else:
        out.append(
            Target(
                "pickup p99 at 2,000/s <= 5 ms",
                fast["p99_ms"] <= 5.0,
                f"p99 {fast['p99_ms']:.2f} ms (p50 {fast['p50_ms']:.2f} ms)",
            )
        )

    unary = extras.get("unary", {})
    floor = unary.get("100", {}).get("per_s")
    rpc = unary.get("add_rpc", {}).get("per_s")
    title = "one Add RPC per job (raw stubs), 100 in flight >= 0.8x bare unary"
    if not floor or not rpc:
        out.append(Target(title, None, "not measured"))
    else:
        share = rpc / floor
        detail = f"{number(rpc)} vs {number(floor)} calls/s = {share:.2f}x"
        out.append(Target(title, share >= 0.8, detail))

    for payload, label in ((0, "small"), (None, "10 KB")):
        points = backlog_points(extras, large_payload=payload is None)
        title = f"processing with the longest backlog >= 0.9x the shortest ({label} payloads)"
        if len(points) < 2:
            out.append(Target(title, None, "not measured"))
            continue
        short, long = points[0], points[-1]
        share = long["steady"] / short["steady"]
        detail = (
            f"{long['waiting']:,} waiting {number(long['steady'])} vs {short['waiting']:,} "
            f"waiting {number(short['steady'])} jobs/s (steady{rounds_note(short)}) = {share:.2f}x"
        )
        out.append(Target(title, share >= 0.9, detail))

    bulk_mine = jb.values.get("bulk") if jb else None
    bulk_theirs = bull.values.get("bulk") if bull else None
    r = ratio(bulk_mine, bulk_theirs, True)
    if r is None:
        out.append(Target("bulk enqueue >= BullMQ addBulk", None, "not measured"))
    else:
        detail = f"{number(bulk_mine or 0)} vs {number(bulk_theirs or 0)} jobs/s = {r:.2f}x"
        out.append(Target("bulk enqueue >= BullMQ addBulk", r >= 1.0, detail))

    idle = extras.get("idle")
    if not idle or "rss_delta_mb" not in idle:
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


def backlog_points(
    extras: dict[str, Any], large_payload: bool, peer: str = "jobbroker"
) -> list[dict[str, Any]]:
    """The backlog measurements of one peer and payload size, shortest backlog first."""
    points = [
        value
        for key, value in extras.items()
        if key.startswith("backlog_")
        and isinstance(value, dict)
        and "steady" in value
        and value.get("peer", "jobbroker") == peer
        and (value["payload_bytes"] > 0) == large_payload
    ]
    return sorted(points, key=lambda p: p["waiting"])


def rounds_note(point: dict[str, Any]) -> str:
    """ ", median of N interleaved rounds" for a backlog point measured in rounds (runs before
    the rounds measured each size once)."""
    rounds = point.get("steady_per_round", [])
    return f", median of {len(rounds)} interleaved rounds" if len(rounds) > 1 else ""


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


def load_of(section: dict[str, Any] | None) -> str:
    if section and "load" in section:
        return f" [load {section['load']:.1f}]"
    return ""


def pickup_lines(name: str, latency: dict[str, Any] | None, rate: str) -> list[str]:
    if not latency or "pickup" not in latency:
        return [f"- {name} at {rate}/s: {error_of(latency)}"]
    text = latency_line(f"{name} pickup (add acknowledged -> start) at {rate}/s", latency["pickup"])
    text += f"; rate reached {number(latency['rate'])}/s, {latency['failed_adds']} adds failed"
    return [
        "- " + text + load_of(latency),
        "  " + latency_line("add->start (add sent -> start)", latency["add_to_start"]),
    ]


def unary_lines(unary: dict[str, Any]) -> list[str]:
    if "100" not in unary or "add_rpc" not in unary:
        return [f"- one Add RPC per job / unary floor: {error_of(unary)}"]
    lines = []
    for key, title in (
        ("64", "bare grpc.aio unary (echo), 64 in flight"),
        ("100", "bare grpc.aio unary (echo), 100 in flight"),
        ("add_rpc", "one Add RPC per job (raw stubs, no batching), 100 in flight"),
    ):
        figures = unary[key]
        lines.append(
            f"- {title}: {number(figures['per_s'])} calls/s; CPU per call: server "
            f"{figures['server_us_per_call']:.0f} µs, client {figures['client_us_per_call']:.0f} µs"
        )
    share = unary["add_rpc"]["per_s"] / unary["100"]["per_s"]
    lines.append(f"  Add RPC / bare unary at 100 in flight = {share:.2f}x{load_of(unary)}")
    for key, title in (
        ("echo_paced", "one call at a time, paced: bare unary (echo)"),
        ("add_paced", "one call at a time, paced: Add RPC (raw stubs)"),
        ("client_add_paced", "one call at a time, paced: the Python client's add()"),
    ):
        if key in unary:
            lines.append("- " + latency_line(title, unary[key]))
    return lines


def scale_lines(points: Any) -> list[str]:
    if not isinstance(points, list):
        return [f"- scale curve: {error_of(points)}"]
    rows = [
        [
            "workers",
            "brokers",
            "jobs/s",
            "steady jobs/s",
            "brokers % core",
            "workers % core",
            "Redis % core",
            "sum %",
            "µs/job b+w+R",
            "load",
        ]
    ]
    for point in points:
        cpu = point["cpu"]
        shares = [cpu[side]["core_pct"] for side in ("brokers", "workers", "redis")]
        per_job = [cpu[side]["us_per_job"] for side in ("brokers", "workers", "redis")]
        rows.append(
            [
                str(point["workers"]),
                str(point["brokers"]),
                number(point["per_s"]),
                number(point["window_per_s"]),
                *(f"{share:.0f}" for share in shares),
                f"{sum(shares):.0f}",
                " + ".join(f"{us:.0f}" for us in per_job),
                f"{point['load']:.1f}",
            ]
        )
    return [
        "scale curve (worker processes x brokers, one private Redis; % of one core, 2 cores =",
        "200 %; steady: over the window in which every worker was running):",
        "",
        *grid(rows),
    ]


def backlog_lines(extras: dict[str, Any]) -> list[str]:
    header = ["peer", "waiting", "payload", "jobs", "from ready", "steady", "µs/job w+b+R"]
    rows = [[*header, "Redis MB", "load", "steady per round"]]
    for peer, large in (("jobbroker", False), ("jobbroker", True), ("bullmq", False)):
        for point in backlog_points(extras, large, peer):
            cpu = point["cpu"]
            per_job = [
                point["worker_us_per_job"],
                cpu.get("broker", {}).get("us_per_job", 0.0),
                cpu["redis"]["us_per_job"],
            ]
            rows.append(
                [
                    peer,
                    f"{point['waiting']:,}",
                    f"{point['payload_bytes']:,} B" if point["payload_bytes"] else "small",
                    f"{point['jobs']:,}",
                    number(point["from_ready"]),
                    number(point["steady"]),
                    " + ".join(f"{us:.0f}" for us in per_job),
                    f"{point['redis_used_memory_mb']:.0f}",
                    f"{point['load']:.1f}",
                    " / ".join(number(r) for r in point.get("steady_per_round", [])),
                ]
            )
    errors = [
        f"- {key}: {error_of(value)}"
        for key, value in extras.items()
        if key.startswith("backlog_") and isinstance(value, dict) and "error" in value
    ]
    if len(rows) == 1 and not errors:
        return []
    return [
        "backlog (one worker process working off the first jobs of a queue holding this many, on",
        "a fresh private Redis (and broker) per size; the sizes measured in interleaved rounds,",
        "each row the median round; BullMQ's is the reference for what Redis itself does with a",
        "long backlog; µs/job: worker + broker + Redis):",
        "",
        *grid(rows),
        *errors,
    ]


def extras_text(extras: dict[str, Any], results: Sequence[PeerResult]) -> list[str]:
    by_name = {r.name: r for r in results}
    lines = ["jobbroker alone, and beside BullMQ where it says so:"]
    for name in ("jobbroker", "bullmq"):
        if name in by_name:
            lines += pickup_lines(name, by_name[name].details.get("latency"), "200")
    lines += pickup_lines("jobbroker", extras.get("pickup_2000"), "2,000")
    if "pickup_2000_bullmq" in extras:
        lines += pickup_lines("bullmq", extras["pickup_2000_bullmq"], "2,000")
    lines += unary_lines(extras.get("unary", {}))
    jb = by_name.get("jobbroker")
    client_add = jb.values.get("inflight") if jb else None
    floor = extras.get("unary", {}).get("100", {}).get("per_s")
    if client_add and floor:
        lines.append(
            f"- the Python client's add, 100 in flight (it sends concurrent adds of a queue "
            f"together, one AddBulk(each)): {number(client_add)}/s = {client_add / floor:.2f}x "
            "bare unary"
        )
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
    durable = extras.get("durability", {})
    if "on" in durable:
        off, on = durable["off"], durable["on"]
        lines.append(
            f"- durability {' '.join(durable['flags'])} (private primary + 1 replica): Add one "
            f"by one {number(on['seq'])}/s vs {number(off['seq'])}/s off "
            f"({on['seq'] / (off['seq'] or 1):.2f}x); 100 in flight {number(on['inflight'])}/s "
            f"vs {number(off['inflight'])}/s ({on['inflight'] / (off['inflight'] or 1):.2f}x)"
            + load_of(durable)
        )
    else:
        lines.append(f"- durability option: {error_of(durable)}")
    scale = extras.get("scale")
    if scale is not None:
        lines += ["", *scale_lines(scale)]
    backlog = backlog_lines(extras)
    if backlog:
        lines += ["", *backlog]
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
        f"machine: {m['nproc']} cores, {m['cpu']}, {m['ram_gib']} GiB, Linux {m['kernel']}; "
        f"load average at start {m['load_at_start']}, at end {m.get('load_at_end', '?')}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in info.get("versions", {}).items()),
        f"command: {info['command']}",
        "",
        table(results, setups),
        "",
        processing_table(results),
    ]
    commands = commands_text(results)
    if commands:
        out += ["", "Redis commands per job in the processing runs (calls x µs = µs):", *commands]
    problems = errors(results)
    if problems:
        out += ["", "errors:", problems]
    if extras:
        out += ["", *extras_text(extras, results)]
    out += ["", "targets:", *(t.line() for t in verdicts)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Print the report of a run saved with ``--json`` (with this version's report)."""
    import json
    import sys
    from pathlib import Path

    from bench.scenarios import peer_specs

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m bench.report RUN.json", file=sys.stderr)
        return 2
    document = json.loads(Path(args[0]).read_text())
    results = [PeerResult(**result) for result in document["results"]]
    specs = peer_specs()
    setups = {r.name: specs[r.name].setup for r in results if r.name in specs}
    extras = document.get("extras", {})
    print(render(document, results, setups, extras, targets(results, extras), None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
