// Bull's `Job`, on a jobbroker job: what `queue.add` and `queue.getJob` return, what `@Process`
// methods and queue event listeners receive.

import {
  JobActive,
  type Client,
  type Job as BrokerJob,
  type JobOptions,
  type JobState,
  type WorkerJob,
} from "@jobbroker/client";
import { BackoffType } from "@jobbroker/client/gen/jobbroker/v1/job_pb";

/** Bull's job options that jobbroker carries (the same names and units). */
export type JobOpts = JobOptions;

/** The value of `job.progress()`: a percent, or the value the worker reported. */
export type JobProgress = number | object | string | boolean;

function optsOf(job: BrokerJob): JobOpts {
  const options = job.proto.options;
  const opts: JobOpts = { attempts: job.maxAttempts };
  if (options?.priority) opts.priority = options.priority;
  if (options?.delayMs) opts.delay = Number(options.delayMs);
  if (options?.timeoutMs) opts.timeout = Number(options.timeoutMs);
  if (options?.lifespanMs) opts.lifespan = Number(options.lifespanMs);
  if (options?.jobId) opts.jobId = options.jobId;
  if (options?.lifo) opts.lifo = true;
  if (options?.backoff?.type) {
    opts.backoff = { type: options.backoff.type === BackoffType.FIXED ? "fixed" : "exponential", delay: Number(options.backoff.delayMs) };
  }
  return opts;
}

/** A job, as Bull's `Job` shows it. */
export class Job<T = any> {
  /** The job's id. */
  id: string;
  /** The job's name. */
  name: string;
  /** The job's input. */
  data: T;
  /** The options it was added with. */
  opts: JobOpts;
  /** Attempts made before the current one (in a processor), or attempts that ended. */
  attemptsMade: number;
  /** The result of a completed job (null before). */
  returnvalue: any = null;
  /** The message of the last failure. */
  failedReason: string | undefined;
  /** The stack of the last failure, as Bull keeps it. */
  stacktrace: string[] = [];
  /** When the job was added (ms since the epoch). */
  timestamp: number;
  /** When its last attempt started. */
  processedOn: number | undefined;
  /** When it finished. */
  finishedOn: number | undefined;
  /** The queue's name. */
  readonly queueName: string;
  private progressValue: JobProgress = 0;

  /** @internal */
  constructor(
    private readonly client: Client,
    queue: string,
    fields: { id: string; name: string; data: T; opts: JobOpts; attemptsMade?: number; timestamp?: number },
    private readonly running?: WorkerJob<T>,
  ) {
    this.queueName = queue;
    this.id = fields.id;
    this.name = fields.name;
    this.data = fields.data;
    this.opts = fields.opts;
    this.attemptsMade = fields.attemptsMade ?? 0;
    this.timestamp = fields.timestamp ?? Date.now();
  }

  /** @internal A snapshot from the broker. */
  static fromSnapshot<T>(client: Client, job: BrokerJob): Job<T> {
    const made = new Job<T>(client, job.queue, {
      id: job.id,
      name: job.name,
      data: job.data as T,
      opts: optsOf(job),
      attemptsMade: job.attemptsMade,
      timestamp: job.createdAt?.getTime() ?? 0,
    });
    made.refresh(job);
    return made;
  }

  /** @internal The job a processor runs. */
  static fromWorker<T>(client: Client, job: WorkerJob<T>): Job<T> {
    const made = new Job<T>(client, job.queue, { id: job.id, name: job.name, data: job.data, opts: { attempts: job.maxAttempts }, attemptsMade: job.attemptsMade }, job);
    const previous = job.previousProgress;
    made.progressValue = (previous.percent ?? (previous.value as JobProgress | undefined)) ?? 0;
    return made;
  }

  private refresh(job: BrokerJob): void {
    this.attemptsMade = job.attemptsMade;
    const progress = job.progress;
    this.progressValue = (progress.percent ?? (progress.value as JobProgress | undefined)) ?? 0;
    this.returnvalue = job.result ?? null;
    this.failedReason = job.failure?.message;
    this.stacktrace = job.failure?.stack ? [job.failure.stack] : [];
    this.processedOn = job.startedAt?.getTime();
    this.finishedOn = job.finishedAt?.getTime();
  }

  /**
   * Bull's two-in-one: `progress()` returns the last progress; `progress(value)` (in a
   * processor) reports a percent (0-100) or any JSON value.
   */
  progress(): JobProgress;
  progress(value: JobProgress): Promise<void>;
  progress(value?: JobProgress): JobProgress | Promise<void> {
    if (value === undefined) return this.progressValue;
    if (!this.running) return Promise.reject(new Error("job.progress(value) reports progress from a @Process method only"));
    this.running.progress(value);
    this.progressValue = value;
    return Promise.resolve();
  }

  /** Append a line to the job's log (in a processor). */
  log(line: string): Promise<void> {
    if (!this.running) return Promise.reject(new Error("job.log(line) writes from a @Process method only"));
    this.running.log(line);
    return Promise.resolve();
  }

  /** In a processor: fires on cancel, timeout, a lost lease or shutdown (jobbroker's addition). */
  get signal(): AbortSignal | undefined {
    return this.running?.signal;
  }

  /** The job's state now: waiting, delayed, active, completed, failed or cancelled. */
  async getState(): Promise<JobState> {
    const job = await this.client.getJob(this.queueName, this.id);
    this.refresh(job);
    return job.state;
  }

  /**
   * Remove the job. An active job cannot be removed: it is cancelled instead (its worker's
   * AbortSignal fires and it ends cancelled), which is what an endpoint calling `remove()` to
   * cancel a job means.
   */
  async remove(): Promise<void> {
    try {
      await this.client.remove(this.queueName, this.id);
    } catch (error) {
      if (!(error instanceof JobActive)) throw error;
      await this.client.cancel(this.queueName, this.id, "removed while active");
    }
  }

  /** Move a failed (or cancelled) job back to waiting. */
  async retry(): Promise<void> {
    await this.client.retry(this.queueName, this.id);
  }

  /** Run a delayed job now. */
  async promote(): Promise<void> {
    await this.client.promote(this.queueName, this.id);
  }

  /** Wait until the job finished; its result (also in `returnvalue`), or the failure thrown. */
  async finished(): Promise<any> {
    this.returnvalue = await this.client.wait(this.queueName, this.id);
    return this.returnvalue;
  }

  /** The job as plain data (Bull's `toJSON`). */
  toJSON(): Record<string, unknown> {
    return {
      id: this.id,
      name: this.name,
      data: this.data,
      opts: this.opts,
      progress: this.progressValue,
      attemptsMade: this.attemptsMade,
      returnvalue: this.returnvalue,
      failedReason: this.failedReason,
      timestamp: this.timestamp,
      processedOn: this.processedOn,
      finishedOn: this.finishedOn,
    };
  }
}
