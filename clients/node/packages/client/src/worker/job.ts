// What a processor gets: the job, progress and log reporting, and the AbortSignal that fires on
// cancel, timeout, a lost lease or shutdown. Also how what the processor did becomes the
// outcome the broker gets.

import { create } from "@bufbuild/protobuf";

import type { LeasedJob, Outcome } from "../gen/jobbroker/v1/worker_service_pb.js";
import { OutcomeSchema } from "../gen/jobbroker/v1/worker_service_pb.js";
import { decode, encode, type Progress, type TraceContextCarrier } from "../models.js";
import type { Payload } from "../gen/jobbroker/v1/job_pb.js";

/** Throw it (or a subclass) from a processor to fail the job for good, whatever attempts are left. */
export class DoNotRetry extends Error {
  constructor(message?: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** BullMQ's name for `DoNotRetry`. */
export const UnrecoverableError = DoNotRetry;

/** Why a job was asked to stop. */
export type StopReason = "cancel" | "lost" | "shutdown";

/** Thrown into nothing: the AbortSignal's reason when a job is asked to stop. */
export class JobStopped extends Error {
  constructor(
    readonly stopReason: StopReason,
    readonly detail: string,
  ) {
    super(`job stopped (${stopReason}${detail ? `: ${detail}` : ""})`);
    this.name = "AbortError";
  }
}

// The broker's limits on a failure (worker_service.proto, FailRequest) and on a log line.
const MAX_MESSAGE = 65_536;
const MAX_ERROR_TYPE = 256;
const MAX_STACK = 262_144;
const MAX_LOG_LINE_BYTES = 16_384;

/** Where a job's reports go (the worker's stream). */
export interface Reports {
  progress(lease: Lease, percent: number | undefined, value: Payload | undefined): void;
  log(lease: Lease, line: string): void;
  flush(lease: Lease): Promise<void>;
}

/** One lease as the worker tracks it, from the Lease reply to the acknowledged outcome. */
export class Lease {
  readonly key: string;
  readonly controller = new AbortController();
  stopReason: StopReason | undefined;
  /** The processor returned or threw. */
  handlerDone = false;
  /** The lease is over for this worker (outcome acknowledged, or lost). */
  settled = false;
  /** When the lease is renewed next (performance.now() ms). */
  renewAt = 0;
  expiresAtMs: number;
  readonly job: WorkerJob;

  constructor(
    readonly leased: LeasedJob,
    workerId: string,
    reports: Reports,
  ) {
    this.key = leaseKey(leased.queue, leased.jobId, leased.fence);
    this.expiresAtMs = Number(leased.leaseExpiresAtMs);
    this.job = new WorkerJob(this, workerId, reports);
  }

  get token(): string {
    return this.leased.token;
  }

  /** No more reports are wanted for this lease. */
  get finished(): boolean {
    return this.handlerDone || this.stopReason === "lost";
  }

  /** Ask the processor to stop; a later reason does not undo a lost lease. */
  stop(reason: StopReason, detail = ""): void {
    if (this.stopReason === "lost") return;
    this.stopReason = reason;
    if (!this.controller.signal.aborted) this.controller.abort(new JobStopped(reason, detail));
  }
}

export function leaseKey(queue: string, jobId: string, fence: bigint): string {
  return `${queue}\u0000${jobId}\u0000${fence}`;
}

function fit(line: string): string {
  if (line.length * 4 <= MAX_LOG_LINE_BYTES) return line;
  const raw = Buffer.from(line);
  if (raw.length <= MAX_LOG_LINE_BYTES) return line;
  // Cut on a character boundary: decoding drops a partial last character.
  return raw.subarray(0, MAX_LOG_LINE_BYTES - 3).toString("utf8").replace(/\uFFFD$/, "") + "...";
}

/** One leased job as a processor sees it. */
export class WorkerJob<Data = unknown> {
  /** The job's id. */
  readonly id: string;
  /** The queue the job was leased from. */
  readonly queue: string;
  /** The job's name (what its processor was registered under). */
  readonly name: string;
  /** The job's input: decoded JSON, or `Raw` for other content types. */
  readonly data: Data;
  /** The attempt that runs now, 1-based. */
  readonly attempt: number;
  /** Total attempts the job may make. */
  readonly maxAttempts: number;
  /** The id of the worker running the job. */
  readonly workerId: string;
  /**
   * Fires when the job should stop: a Cancel arrived, its attempt timed out, the lease was lost,
   * or the worker is shutting down and the grace period ran out. Its `reason` is a `JobStopped`.
   */
  readonly signal: AbortSignal;

  constructor(
    private readonly lease: Lease,
    workerId: string,
    private readonly reports: Reports,
  ) {
    const leased = lease.leased;
    this.id = leased.jobId;
    this.queue = leased.queue;
    this.name = leased.name;
    this.data = decode(leased.data) as Data;
    this.attempt = leased.attempt;
    this.maxAttempts = leased.maxAttempts;
    this.workerId = workerId;
    this.signal = lease.controller.signal;
  }

  /** Attempts made before this one (Bull's `attemptsMade`). */
  get attemptsMade(): number {
    return this.attempt - 1;
  }

  /** When the attempt times out (the job's `timeout` option); undefined without one. */
  get timeoutAt(): Date | undefined {
    const at = this.lease.leased.timeoutAtMs;
    return at ? new Date(Number(at)) : undefined;
  }

  /** When the lease runs out unless renewed (the worker renews it for you). */
  get leaseExpiresAt(): Date {
    return new Date(this.lease.expiresAtMs);
  }

  /**
   * The W3C trace context the job was added with (`traceparent`, `tracestate`), or undefined.
   * Start the attempt's span as its child: `propagation.extract(context.active(), job.traceContext)`
   * with `@opentelemetry/api` (docs/tracing.md).
   */
  get traceContext(): TraceContextCarrier | undefined {
    const carried = this.lease.leased.traceContext;
    if (!carried?.traceparent) return undefined;
    return carried.tracestate
      ? { traceparent: carried.traceparent, tracestate: carried.tracestate }
      : { traceparent: carried.traceparent };
  }

  /** The progress a previous attempt left, to resume from. */
  get previousProgress(): Progress {
    const progress = this.lease.leased.progress;
    const out: Progress = {};
    if (progress?.percent !== undefined) out.percent = progress.percent;
    if (progress?.value !== undefined) out.value = decode(progress.value);
    return out;
  }

  /**
   * Report progress: a percent (0-100), or any other JSON value (or `Raw`), for example the
   * partial output so far; `progress(40, { tokens })` reports both. Several calls between two
   * sends collapse into the latest.
   */
  progress(percentOrValue: unknown, value?: unknown): void {
    let percent: number | undefined;
    let payload: Payload | undefined;
    if (typeof percentOrValue === "number") {
      if (!(percentOrValue >= 0 && percentOrValue <= 100)) {
        throw new RangeError(`progress: a percent between 0 and 100 (got ${percentOrValue})`);
      }
      percent = percentOrValue;
      if (value !== undefined) payload = encode(value);
    } else if (percentOrValue !== undefined) {
      payload = encode(percentOrValue);
    }
    if (this.lease.finished) return;
    this.reports.progress(this.lease, percent, payload);
  }

  /** Append one line to the job's log (lines over 16 KiB are cut). */
  log(line: string): void {
    if (this.lease.finished) return;
    this.reports.log(this.lease, fit(String(line)));
  }

  /** Wait until the progress and log lines reported so far reached the broker. */
  flush(): Promise<void> {
    return this.reports.flush(this.lease);
  }

  /** Throw the signal's reason once the job was asked to stop. */
  throwIfStopped(): void {
    this.signal.throwIfAborted();
  }
}

function outcome(lease: Lease, kind: "complete" | "fail" | "release", fields: Record<string, unknown> = {}): Outcome {
  const base = { queue: lease.leased.queue, jobId: lease.leased.jobId, token: lease.token, ...fields };
  return create(OutcomeSchema, { kind: { case: kind, value: base } as Outcome["kind"] });
}

/** Give a lease back without spending an attempt. */
export function release(lease: Lease): Outcome {
  return outcome(lease, "release");
}

/** A failure of the current attempt. */
export function fail(lease: Lease, errorType: string, message: string, stack = "", noRetry = false): Outcome {
  if (stack.length > MAX_STACK) stack = "...\n" + stack.slice(-(MAX_STACK - 4)); // keep the raising end
  return outcome(lease, "fail", {
    errorType: errorType.slice(0, MAX_ERROR_TYPE),
    message: message.slice(0, MAX_MESSAGE),
    stack,
    noRetry,
  });
}

/** The failure an error stands for: its name, message and stack. */
export function failure(lease: Lease, error: unknown, noRetry = false): Outcome {
  if (error instanceof Error) {
    const type = error.name === "Error" ? error.constructor.name : error.name;
    return fail(lease, type || "Error", error.message, error.stack ?? "", noRetry);
  }
  return fail(lease, typeof error, String(error), "", noRetry);
}

/** A completion with the processor's result (JSON, or `Raw` as is). */
export function complete(lease: Lease, result: unknown): Outcome {
  let payload: Payload;
  try {
    payload = encode(result);
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    return fail(lease, "TypeError", `the processor's result cannot be encoded as JSON (${why}); return JSON values or Raw`);
  }
  return outcome(lease, "complete", { result: payload });
}

/** The failure of a job no processor was registered for: final, retrying cannot help. */
export function unknownName(lease: Lease, workerId: string, known: string[]): Outcome {
  const names = known.map((n) => JSON.stringify(n)).sort().join(", ") || "none";
  return fail(
    lease,
    "UnknownJobName",
    `worker ${workerId} has no processor for job name ${JSON.stringify(lease.leased.name)} (processors: ${names}; ` +
      "register one with worker.process(name, fn) or a default with worker.process(fn))",
    "",
    true,
  );
}

/**
 * The outcome of a processor that stopped because it was asked to: a cancelled job fails (the
 * broker ends it CANCELLED), a shut-down one goes back, a lost lease reports nothing.
 */
export function stopped(lease: Lease): Outcome | undefined {
  const reason = lease.controller.signal.reason as JobStopped | undefined;
  if (lease.stopReason === "lost") return undefined;
  if (lease.stopReason === "cancel") {
    const detail = reason?.detail ? ` (${reason.detail})` : "";
    return fail(lease, "CancelledError", `cancelled${detail}`, "", true);
  }
  return release(lease);
}
