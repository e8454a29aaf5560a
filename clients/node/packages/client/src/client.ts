// Client: the producer's and operator's client of the broker's JobService (the queue calls
// come from QueueCalls).

import { create } from "@bufbuild/protobuf";

import type { CallOptions, ClientOptions } from "./base.js";
import { JobBrokerError, JobCancelled, JobFailed, JobNotFound } from "./errors.js";
import { BulkJobSchema, JobService } from "./gen/jobbroker/v1/job_service_pb.js";
import type { JobState as PbJobState } from "./gen/jobbroker/v1/job_pb.js";
import {
  encode,
  eventFromProto,
  isTerminal,
  jobFromProto,
  optionsToProto,
  stateName,
  stateValue,
  type Added,
  type Event,
  type Job,
  type JobOptions,
  type JobState,
} from "./models.js";
import { QueueCalls } from "./queues.js";
import { sleep } from "./timing.js";

export type { CallOptions, ClientOptions };

/** One job of `addBulk`. */
export interface BulkJob {
  name: string;
  data?: unknown;
  options?: JobOptions;
}

/** One page of `list()`. */
export interface Page {
  jobs: Job[];
  /** Pass it as `pageToken` for the next page; empty on the last page. */
  nextPageToken: string;
  /** Jobs in the state when the page was read. */
  total: number;
}

/** Log lines of a job. */
export interface Logs {
  /** The lines asked for, oldest first. */
  lines: string[];
  /** Lines the job has in all. */
  total: number;
}

/** Options of `list()`. */
export interface ListOptions extends CallOptions {
  /** At most this many jobs (default 50, at most 1,000). */
  pageSize?: number;
  /** The `nextPageToken` of the previous page. */
  pageToken?: string;
  /** Newest first instead of the state's natural order. */
  descending?: boolean;
}

function state(value: PbJobState): JobState {
  const name = stateName(value);
  if (name === undefined) throw new JobBrokerError("the broker answered without a job state");
  return name;
}

/**
 * A producer's and operator's client of the broker (JobService and QueueService).
 *
 * Every unary call has a deadline (`timeout`, 10 s by default; per call `{ timeout }`), and a
 * call that fails with UNAVAILABLE is retried with backoff within that deadline, but only when
 * repeating it is harmless: every call except `add`/`addBulk` (and those too when every job
 * has a custom `jobId`) and the bulk queue operations. A refusal from a broker that is
 * shutting down is retried for every call. Errors are `JobBrokerError` subclasses, one per
 * error reason. Call `close()` when done.
 */
export class Client extends QueueCalls {
  constructor(options: ClientOptions = {}) {
    super(options);
  }

  private jobService() {
    return this.service(JobService);
  }

  /**
   * Add one job; once this resolves, the job is stored. `data` is any JSON value (or `Raw`).
   * Only an add with a custom `jobId` is retried on UNAVAILABLE: without one, an add whose
   * answer was lost may have been stored, and adding it again would make a second job.
   */
  async add(queue: string, name: string, data?: unknown, options: JobOptions = {}, call?: CallOptions): Promise<Added> {
    const request = { queue, name, data: encode(data), options: optionsToProto(options) };
    const reply = await this.unary(this.jobService(), "add", request, call, Boolean(options.jobId));
    return { jobId: reply.jobId, state: state(reply.state), duplicate: reply.duplicate };
  }

  /**
   * Add several jobs to one queue atomically: all of them, or none; the answers in the same
   * order. Retried on UNAVAILABLE only when every job has a custom `jobId`.
   */
  async addBulk(queue: string, jobs: readonly BulkJob[], call?: CallOptions): Promise<Added[]> {
    const request = {
      queue,
      jobs: jobs.map((job) =>
        create(BulkJobSchema, { name: job.name, data: encode(job.data), options: optionsToProto(job.options) }),
      ),
    };
    const idempotent = jobs.length > 0 && jobs.every((job) => Boolean(job.options?.jobId));
    const reply = await this.unary(this.jobService(), "addBulk", request, call, idempotent);
    return reply.results.map((r) => ({ jobId: r.jobId, state: state(r.state), duplicate: r.duplicate }));
  }

  /** The job's current snapshot; throws `JobNotFound`. */
  async getJob<Data = unknown, Result = unknown>(queue: string, jobId: string, call?: CallOptions): Promise<Job<Data, Result>> {
    const reply = await this.unary(this.jobService(), "getStatus", { queue, jobId }, call);
    if (!reply.job) throw new JobBrokerError("the broker answered GetStatus without a job");
    return jobFromProto<Data, Result>(reply.job);
  }

  /**
   * Cancel a job. A waiting or delayed job is `cancelled` at once (the answer); an active one
   * answers `active`: its worker is told to stop and the job ends cancelled shortly. Throws
   * `JobFinished` for a job that already ended.
   */
  async cancel(queue: string, jobId: string, reason = "", call?: CallOptions): Promise<JobState> {
    const reply = await this.unary(this.jobService(), "cancel", { queue, jobId, reason }, call);
    return state(reply.state);
  }

  /**
   * Follow a job: its snapshot first (a `Job`, with `kind: "job"`), then each of its events
   * (an `Event`, `kind: "event"`); the iteration ends after the event that ends the job
   * (`event.final`). If the broker becomes unreachable mid-stream, the client reconnects with
   * backoff and resumes after the last event it delivered: nothing is lost or repeated.
   * Should the broker no longer keep that event, it goes on with a fresh snapshot.
   */
  streamProgress(
    queue: string,
    jobId: string,
    options: CallOptions & { afterEventId?: string } = {},
  ): AsyncGenerator<ProgressItem, void, undefined> {
    return this.resumable(
      (after, deadline) =>
        this.jobService().serverStream(
          "streamProgress",
          { queue, jobId, afterEventId: after },
          deadline === undefined ? {} : { deadline },
        ),
      (item, last): [ProgressItem, string] => {
        if (item.event) return [{ kind: "event", event: eventFromProto(item.event) }, item.event.eventId];
        if (!item.snapshot) throw new JobBrokerError("the broker sent a StreamProgress message without a job");
        return [{ kind: "job", job: jobFromProto(item.snapshot) }, item.snapshotEventId || last];
      },
      options.afterEventId ?? "",
      options,
    );
  }

  /**
   * Wait until the job ends and resolve with its result. Rejects with `JobFailed` or
   * `JobCancelled` (carrying the job) if it ended that way, `JobNotFound` if it does not
   * exist or was removed first. Follows the job with `streamProgress`, so it rides out broker
   * restarts the same way; `timeout` (ms) bounds the wait.
   */
  async wait<Result = unknown>(queue: string, jobId: string, call: CallOptions = {}): Promise<Result> {
    const deadline = call.timeout === undefined ? undefined : Date.now() + call.timeout;
    const remaining = (): CallOptions => ({
      ...call,
      ...(deadline === undefined ? {} : { timeout: Math.max(1, deadline - Date.now()) }),
    });
    for (;;) {
      for await (const item of this.streamProgress(queue, jobId, remaining())) {
        if (item.kind === "job") {
          if (isTerminal(item.job.state)) return outcome(item.job) as Result;
        } else if (item.event.type === "removed") {
          throw new JobNotFound(`job ${jobId} of queue ${queue} was removed`);
        } else if (item.event.type === "completed") {
          return item.event.result as Result;
        } else if (item.event.final || isTerminal(item.event.state)) {
          return outcome(await this.finishedJob(item.event, remaining())) as Result;
        }
      }
      // The stream ended without an ending event (it should not): look again.
      const job = await this.getJob(queue, jobId, remaining());
      if (isTerminal(job.state)) return outcome(job) as Result;
      await sleep(this.retryBackoff, call.signal);
    }
  }

  /** The job an ending event ended: fresh, or (removed at once) as the event tells it. */
  private async finishedJob(event: Event, call: CallOptions): Promise<Pick<Job, "id" | "queue" | "state" | "result" | "failure">> {
    try {
      const job = await this.getJob(event.queue, event.jobId, call);
      if (isTerminal(job.state)) return job;
    } catch (error) {
      if (!(error instanceof JobNotFound)) throw error;
    }
    const ended: JobState = isTerminal(event.state) ? (event.state as JobState) : event.type === "cancelled" ? "cancelled" : "failed";
    return { id: event.jobId, queue: event.queue, state: ended, result: event.result, failure: event.failure };
  }

  /** One page of the jobs in `state`, in the state's natural order (or newest first). */
  async list(queue: string, state: JobState, options: ListOptions = {}): Promise<Page> {
    const request = {
      queue,
      state: stateValue(state),
      pageSize: options.pageSize ?? 50,
      pageToken: options.pageToken ?? "",
      descending: options.descending ?? false,
    };
    const reply = await this.unary(this.jobService(), "listJobs", request, options);
    return { jobs: reply.jobs.map((job) => jobFromProto(job)), nextPageToken: reply.nextPageToken, total: Number(reply.total) };
  }

  /** Every job in `state`, walking the pages of `list()`. */
  async *iterJobs(queue: string, state: JobState, options: Omit<ListOptions, "pageToken"> = {}): AsyncGenerator<Job, void, undefined> {
    let pageToken = "";
    do {
      const page = await this.list(queue, state, { pageSize: 100, ...options, pageToken });
      yield* page.jobs;
      pageToken = page.nextPageToken;
    } while (pageToken);
  }

  /** Move a failed or cancelled job back to waiting with fresh attempts; throws `JobNotRetryable`. */
  async retry(queue: string, jobId: string, call?: CallOptions): Promise<JobState> {
    return state((await this.unary(this.jobService(), "retry", { queue, jobId }, call)).state);
  }

  /** Make a delayed job waiting now; throws `JobNotDelayed`. */
  async promote(queue: string, jobId: string, call?: CallOptions): Promise<JobState> {
    return state((await this.unary(this.jobService(), "promote", { queue, jobId }, call)).state);
  }

  /** Remove a job and its logs; the state it was in. Throws `JobActive` (cancel it first). */
  async remove(queue: string, jobId: string, call?: CallOptions): Promise<JobState> {
    return state((await this.unary(this.jobService(), "remove", { queue, jobId }, call)).state);
  }

  /** Up to `limit` (1-1,000) of the job's log lines from line `offset` (0-based). */
  async logs(queue: string, jobId: string, offset = 0, limit = 100, call?: CallOptions): Promise<Logs> {
    const reply = await this.unary(this.jobService(), "getLogs", { queue, jobId, offset, limit }, call);
    return { lines: [...reply.lines], total: reply.total };
  }
}

/** An item of `streamProgress`: the job's snapshot, or one of its events. */
export type ProgressItem = { kind: "job"; job: Job } | { kind: "event"; event: Event };

/** A finished job's result; its failure or cancellation as an error. */
function outcome(job: Pick<Job, "id" | "queue" | "state" | "result" | "failure">): unknown {
  if (job.state === "completed") return job.result;
  if (job.state === "cancelled") throw new JobCancelled(job);
  throw new JobFailed(job);
}
