// Node-side types: job options in (Bull's names, durations in milliseconds), jobs and events
// out, payloads encoded as JSON for you.

import { create } from "@bufbuild/protobuf";

import { EventType as PbEventType, type JobEvent } from "./gen/jobbroker/v1/events_pb.js";
import {
  BackoffSchema,
  BackoffType,
  FailureReason,
  JobOptionsSchema,
  JobState as PbJobState,
  PayloadSchema,
  RetentionPolicySchema,
  TraceContextSchema,
  type Failure as PbFailure,
  type Job as PbJob,
  type JobOptions as PbJobOptions,
  type Payload,
  type Progress as PbProgress,
  type RetentionPolicy,
} from "./gen/jobbroker/v1/job_pb.js";

const JSON_TYPE = "application/json";
const TEN_YEARS_MS = 10 * 365 * 24 * 3600 * 1000;

/** The state a job is in (Bull's `getState()` names). */
export type JobState = "waiting" | "delayed" | "active" | "completed" | "failed" | "cancelled";

/** What an event reports: the proto's `EventType` in lower case, `_` as `-`. */
export type EventType =
  | "added"
  | "waiting"
  | "delayed"
  | "active"
  | "progress"
  | "completed"
  | "failed"
  | "retries-exhausted"
  | "stalled"
  | "cancelled"
  | "cancel-requested"
  | "removed"
  | "duplicated"
  | "released"
  | "paused"
  | "resumed"
  | "cleaned"
  | "purged"
  | "drained"
  | "unknown";

const TERMINAL: ReadonlySet<JobState> = new Set(["completed", "failed", "cancelled"]);

/** Whether a state is terminal (completed, failed or cancelled). */
export function isTerminal(state: JobState | undefined): boolean {
  return state !== undefined && TERMINAL.has(state);
}

/** A job state of the wire as our name; undefined for "not set". */
export function stateName(value: PbJobState): JobState | undefined {
  if (value === PbJobState.UNSPECIFIED) return undefined;
  const name = PbJobState[value];
  return name === undefined ? undefined : (name.toLowerCase() as JobState);
}

/** A state name (any case) as the wire's enum value. */
export function stateValue(state: string): PbJobState {
  const value = (PbJobState as unknown as Record<string, unknown>)[state.toUpperCase()];
  if (typeof value !== "number" || value === (PbJobState.UNSPECIFIED as number)) {
    const names = Object.keys(PbJobState)
      .filter((k) => Number.isNaN(Number(k)) && k !== "UNSPECIFIED")
      .map((k) => k.toLowerCase());
    throw new RangeError(`state: ${JSON.stringify(state)} is not one of ${names.join(", ")}`);
  }
  return value;
}

function eventTypeName(value: PbEventType): EventType {
  const name = PbEventType[value];
  if (name === undefined || value === PbEventType.UNSPECIFIED) return "unknown";
  return name.toLowerCase().replaceAll("_", "-") as EventType;
}

/** A payload that is not JSON: bytes with their MIME type, carried as they are. */
export class Raw {
  constructor(
    readonly body: Uint8Array,
    readonly contentType = "application/octet-stream",
  ) {}
}

/** A value as a payload: `Raw` as is, anything else as JSON (undefined and null: no value). */
export function encode(value: unknown): Payload {
  if (value instanceof Raw) return create(PayloadSchema, { body: value.body, contentType: value.contentType });
  if (value === undefined || value === null) return create(PayloadSchema);
  const text = JSON.stringify(value);
  if (text === undefined) throw new TypeError(`cannot encode ${typeof value} as JSON`);
  return create(PayloadSchema, { body: Buffer.from(text) });
}

/** A payload as a value: JSON decoded, other types as `Raw`, empty as undefined. */
export function decode(payload: Payload | undefined): unknown {
  if (payload === undefined) return undefined;
  const type = payload.contentType;
  if (type && type.split(";", 1)[0]?.trim().toLowerCase() !== JSON_TYPE) {
    return new Raw(payload.body, type);
  }
  if (payload.body.length === 0) return undefined;
  return JSON.parse(Buffer.from(payload.body).toString("utf8"));
}

/** Milliseconds for the wire: a non-negative integer, at most ten years. */
export function ms(value: number | undefined, field: string): bigint {
  if (value === undefined) return 0n;
  if (!Number.isFinite(value) || value < 0 || value > TEN_YEARS_MS) {
    throw new RangeError(`${field}: a duration in milliseconds, 0 to ten years (got ${value})`);
  }
  return BigInt(Math.round(value));
}

function time(value: bigint): Date | undefined {
  return value ? new Date(Number(value)) : undefined;
}

/** The wait before each retry: Bull's `{ type, delay }` (a number means fixed). */
export type BackoffOptions =
  | number
  | {
      /** `fixed`: every retry waits `delay`; `exponential`: retry n waits delay * 2^(n-1). */
      type: "fixed" | "exponential";
      /** Base delay in milliseconds. */
      delay: number;
      /** 0-1: each delay is drawn from [d * (1 - jitter), d]. */
      jitter?: number;
      /** Upper bound on any one delay, in milliseconds. */
      maxDelay?: number;
    };

/**
 * What to keep of finished jobs, as Bull/BullMQ say it: `true` removes at once, `false` keeps
 * (the default), a number keeps the last N, `{ count, age }` keeps the last `count` and/or
 * those younger than `age` **seconds** (BullMQ's unit for `age`).
 */
export type KeepJobs = boolean | number | { count?: number; age?: number };

/** Options of one job: Bull's names and units (milliseconds). Every field is optional. */
export interface JobOptions {
  /** Idempotent add: the same id with the same name and data returns the existing job. */
  jobId?: string;
  /** 1 (highest) to 1,000,000; 0 (default): unprioritized, served before prioritized jobs. */
  priority?: number;
  /** Milliseconds to wait before the job becomes waiting. */
  delay?: number;
  /** Total attempts, the first included (default 1). */
  attempts?: number;
  /** The wait before each retry; default: retry at once. */
  backoff?: BackoffOptions;
  /** Milliseconds one attempt may run; the worker is told to stop and the attempt fails. */
  timeout?: number;
  /** Milliseconds from creation by which the job must have started, else it fails EXPIRED. */
  lifespan?: number;
  /** What to keep once the job completed. */
  removeOnComplete?: KeepJobs;
  /** What to keep once the job failed for good or was cancelled. */
  removeOnFail?: KeepJobs;
  /** Serve before the jobs of the same priority already waiting. */
  lifo?: boolean;
  /** A group key (a tenant, a user): the queue's group rate limit applies per group. */
  group?: string;
  /**
   * The W3C trace context of the span that adds the job: the worker runs every attempt in a
   * child span of it (docs/tracing.md). With `@opentelemetry/api`:
   * `const traceContext = {}; propagation.inject(context.active(), traceContext);`
   */
  traceContext?: TraceContextCarrier;
}

/** A W3C trace context, as the `traceparent` and `tracestate` headers carry it. */
export interface TraceContextCarrier {
  traceparent?: string;
  tracestate?: string;
}

function traceContext(value: TraceContextCarrier | undefined) {
  if (!value?.traceparent) return undefined;
  return create(TraceContextSchema, { traceparent: value.traceparent, tracestate: value.tracestate ?? "" });
}

function retention(value: KeepJobs | undefined, field: string): RetentionPolicy | undefined {
  if (value === undefined || value === false) return undefined;
  if (value === true) return create(RetentionPolicySchema, { remove: true });
  if (typeof value === "number") {
    if (!Number.isInteger(value) || value < 0) throw new RangeError(`${field}: a count of jobs (got ${value})`);
    return create(RetentionPolicySchema, { keepLast: value });
  }
  return create(RetentionPolicySchema, {
    keepLast: value.count ?? 0,
    keepAgeMs: ms(value.age === undefined ? undefined : value.age * 1000, `${field}.age`),
  });
}

function backoff(value: BackoffOptions | undefined) {
  if (value === undefined) return undefined;
  const spec = typeof value === "number" ? { type: "fixed" as const, delay: value } : value;
  if (spec.type !== "fixed" && spec.type !== "exponential") {
    throw new RangeError(`backoff.type: "fixed" or "exponential" (got ${JSON.stringify(spec.type)})`);
  }
  return create(BackoffSchema, {
    type: spec.type === "fixed" ? BackoffType.FIXED : BackoffType.EXPONENTIAL,
    delayMs: ms(spec.delay, "backoff.delay"),
    jitter: spec.jitter ?? 0,
    maxDelayMs: ms(spec.maxDelay, "backoff.maxDelay"),
  });
}

/** Job options as the wire's message. */
export function optionsToProto(options: JobOptions = {}): PbJobOptions {
  return create(JobOptionsSchema, {
    jobId: options.jobId ?? "",
    priority: options.priority ?? 0,
    delayMs: ms(options.delay, "delay"),
    attempts: options.attempts ?? 0,
    backoff: backoff(options.backoff),
    timeoutMs: ms(options.timeout, "timeout"),
    lifespanMs: ms(options.lifespan, "lifespan"),
    removeOnComplete: retention(options.removeOnComplete, "removeOnComplete"),
    removeOnFail: retention(options.removeOnFail, "removeOnFail"),
    lifo: options.lifo ?? false,
    group: options.group ?? "",
    traceContext: traceContext(options.traceContext),
  });
}

/** A worker's last reported progress. */
export interface Progress {
  /** Percent complete, 0-100; undefined when never reported. */
  percent?: number;
  /** A free JSON value (for example the tokens of an AI completion so far). */
  value?: unknown;
}

function progress(message: PbProgress | undefined): Progress {
  if (message === undefined) return {};
  const out: Progress = {};
  if (message.percent !== undefined) out.percent = message.percent;
  if (message.value !== undefined) out.value = decode(message.value);
  return out;
}

/** Why an attempt or a job failed. */
export interface Failure {
  /** `ERROR`, `TIMEOUT`, `EXPIRED` or `STALLED`. */
  reason: string;
  message: string;
  errorType: string;
  stack: string;
  /** The attempt (1-based) that failed. */
  attempt: number;
}

function failure(message: PbFailure | undefined): Failure | undefined {
  if (message === undefined) return undefined;
  return {
    reason: FailureReason[message.reason] ?? String(message.reason),
    message: message.message,
    errorType: message.errorType,
    stack: message.stack,
    attempt: message.attempt,
  };
}

/** A job's snapshot. */
export interface Job<Data = unknown, Result = unknown> {
  id: string;
  queue: string;
  name: string;
  state: JobState;
  data: Data;
  /** Attempts that have ended (failed, timed out or completed). */
  attemptsMade: number;
  /** Total attempts the job may make. */
  maxAttempts: number;
  progress: Progress;
  /** The result of a completed job. */
  result?: Result;
  /** The last failure, if any attempt failed. */
  failure?: Failure;
  createdAt?: Date;
  startedAt?: Date;
  finishedAt?: Date;
  /** For a delayed job, when it becomes waiting. */
  runAt?: Date;
  workerId: string;
  leaseExpiresAt?: Date;
  cancelRequested: boolean;
  cancelReason: string;
  stalledCount: number;
  logCount: number;
  /** The message as received, for fields this type does not surface. */
  proto: PbJob;
}

/** A job message as a `Job`. */
export function jobFromProto<Data = unknown, Result = unknown>(job: PbJob): Job<Data, Result> {
  const out: Job<Data, Result> = {
    id: job.id,
    queue: job.queue,
    name: job.name,
    state: stateName(job.state) ?? "waiting",
    data: decode(job.data) as Data,
    attemptsMade: job.attemptsMade,
    maxAttempts: job.options?.attempts || 1,
    progress: progress(job.progress),
    workerId: job.workerId,
    cancelRequested: job.cancelRequested,
    cancelReason: job.cancelReason,
    stalledCount: job.stalledCount,
    logCount: job.logCount,
    proto: job,
  };
  if (job.result !== undefined) out.result = decode(job.result) as Result;
  const failed = failure(job.failure);
  if (failed) out.failure = failed;
  for (const [key, value] of [
    ["createdAt", job.createdAtMs],
    ["startedAt", job.startedAtMs],
    ["finishedAt", job.finishedAtMs],
    ["runAt", job.runAtMs],
    ["leaseExpiresAt", job.leaseExpiresAtMs],
  ] as const) {
    const at = time(value);
    if (at) out[key] = at;
  }
  return out;
}

/** One event of a queue's event stream. */
export interface Event {
  /** The event's id in the queue's stream: pass it back to resume after it. */
  id: string;
  type: EventType;
  queue: string;
  /** The job concerned (empty for queue events: paused, resumed, cleaned, purged, drained). */
  jobId: string;
  timestamp?: Date;
  /** The job's state after the event, when the event changed it. */
  state?: JobState;
  /** The attempt (1-based) the event concerns, where one does. */
  attempt: number;
  progress?: Progress;
  result?: unknown;
  failure?: Failure;
  runAt?: Date;
  workerId: string;
  /** For `added`: the job's name. */
  name: string;
  /** For `cleaned` and `purged`: how many jobs were removed. */
  count: number;
  /** Whether a job's progress stream ends with this event (set by the broker). */
  final: boolean;
}

/** An event message as an `Event`. */
export function eventFromProto(event: JobEvent): Event {
  const type = eventTypeName(event.type);
  const out: Event = {
    id: event.eventId,
    type,
    queue: event.queue,
    jobId: event.jobId,
    attempt: event.attempt,
    workerId: event.workerId,
    name: event.name,
    count: Number(event.count),
    final: event.final,
  };
  const timestamp = time(event.timestampMs);
  if (timestamp) out.timestamp = timestamp;
  const state = stateName(event.state);
  if (state) out.state = state;
  if (event.progress !== undefined) out.progress = progress(event.progress);
  if (event.result !== undefined) out.result = decode(event.result);
  const failed = failure(event.failure);
  if (failed) out.failure = failed;
  const runAt = time(event.runAtMs);
  if (runAt) out.runAt = runAt;
  return out;
}

/** The answer to an add. */
export interface Added {
  jobId: string;
  state: JobState;
  /** True when a custom job id named an existing identical job: nothing was added. */
  duplicate: boolean;
}
