// Bull's `Queue`, on jobbroker: `add(name, data, opts)` with Bull's option names, `getJob(id)`,
// the queue operations, and `on(event, listener)` fed by the broker's WatchEvents.

import { EventEmitter } from "node:events";

import { JobNotFound, type Client, type Event, type Job as BrokerJob, type JobState } from "@jobbroker/client";

import { Job, type JobOpts } from "./job.js";

/** Bull's default job name, for `add(data, opts)`. */
export const DEFAULT_JOB_NAME = "__default__";

/** Bull's options jobbroker does not take in `add`, with what to use instead. */
const UNSUPPORTED: Record<string, string> = {
  repeat: "repeatable jobs are schedules: client.upsertSchedule(queue, { key, name, cron | every })",
  limiter: "a rate limit is a queue setting: client.updateSettings(queue, { rateLimit: { max, duration } })",
};

/** The job events of the broker, as the Bull events they stand for. */
const BULL_EVENTS: Partial<Record<Event["type"], string>> = {
  active: "active",
  completed: "completed",
  failed: "failed",
  progress: "progress",
  stalled: "stalled",
  waiting: "waiting",
  paused: "paused",
  resumed: "resumed",
  removed: "removed",
  drained: "drained",
};

/** Job counts per state, as Bull's `getJobCounts()` names them (and jobbroker's cancelled). */
export interface JobCounts {
  waiting: number;
  active: number;
  completed: number;
  failed: number;
  delayed: number;
  paused: number;
  cancelled: number;
}

/** `registerQueue` options. */
export interface QueueOptions {
  /** The queue's name. */
  name: string;
  /** Options every `add` starts from. */
  defaultJobOptions?: JobOpts;
}

/** A queue, as Bull's `Queue` shows it (injected with `@InjectQueue(name)`). */
export class Queue<T = any> extends EventEmitter {
  readonly name: string;
  private watching: AbortController | undefined;

  /** @internal */
  constructor(
    /** The jobbroker client behind the queue. */
    readonly client: Client,
    private readonly options: QueueOptions,
  ) {
    super();
    this.name = options.name;
    // Watch the broker's events once somebody listens to a job event.
    this.on("newListener", (event: string | symbol) => {
      if (typeof event === "string" && Object.values(BULL_EVENTS).includes(event)) this.watch();
    });
  }

  /**
   * Add a job: `add(name, data, opts)` or `add(data, opts)` (name `__default__`), with Bull's
   * option names and units (`attempts`, `backoff: { type, delay }`, `delay`, `priority`,
   * `jobId`, `removeOnComplete`, `removeOnFail`, `timeout`, `lifo`, and `lifespan`).
   */
  add(name: string, data: T, opts?: JobOpts): Promise<Job<T>>;
  add(data: T, opts?: JobOpts): Promise<Job<T>>;
  async add(nameOrData: string | T, dataOrOpts?: T | JobOpts, maybeOpts?: JobOpts): Promise<Job<T>> {
    const named = typeof nameOrData === "string" && (maybeOpts !== undefined || dataOrOpts !== undefined);
    const name = named ? String(nameOrData) : DEFAULT_JOB_NAME;
    const data = (named ? dataOrOpts : nameOrData) as T;
    const given = ((named ? maybeOpts : dataOrOpts) ?? {}) as JobOpts & Record<string, unknown>;
    for (const [key, instead] of Object.entries(UNSUPPORTED)) {
      if (given[key] !== undefined) throw new TypeError(`add: option ${key} is not a job option in jobbroker; ${instead}`);
    }
    const opts: JobOpts = { ...this.options.defaultJobOptions, ...given };
    const added = await this.client.add(this.name, name, data, opts);
    return new Job<T>(this.client, this.name, { id: added.jobId, name, data, opts });
  }

  /** Add several jobs atomically (Bull's `addBulk`). */
  async addBulk(jobs: { name?: string; data: T; opts?: JobOpts }[]): Promise<Job<T>[]> {
    const bulk = jobs.map((job) => ({ name: job.name ?? DEFAULT_JOB_NAME, data: job.data, options: { ...this.options.defaultJobOptions, ...job.opts } }));
    const added = await this.client.addBulk(this.name, bulk);
    return added.map((a, i) => {
      const job = bulk[i] as (typeof bulk)[number];
      return new Job<T>(this.client, this.name, { id: a.jobId, name: job.name, data: job.data, opts: job.options });
    });
  }

  /** The job, or null when there is none with that id. */
  async getJob(jobId: string | number): Promise<Job<T> | null> {
    try {
      return Job.fromSnapshot<T>(this.client, await this.client.getJob(this.name, String(jobId)));
    } catch (error) {
      if (error instanceof JobNotFound) return null;
      throw error;
    }
  }

  /** The jobs in the given states (Bull's `getJobs`), `start`-`end` of each state's order. */
  async getJobs(states: JobState[], start = 0, end = -1): Promise<Job<T>[]> {
    const out: Job<T>[] = [];
    for (const state of states) {
      let index = 0;
      for await (const job of this.client.iterJobs(this.name, state)) {
        if (end >= 0 && index > end) break;
        if (index++ >= start) out.push(Job.fromSnapshot<T>(this.client, job));
      }
    }
    return out;
  }

  getWaiting(start?: number, end?: number): Promise<Job<T>[]> {
    return this.getJobs(["waiting"], start, end);
  }
  getActive(start?: number, end?: number): Promise<Job<T>[]> {
    return this.getJobs(["active"], start, end);
  }
  getDelayed(start?: number, end?: number): Promise<Job<T>[]> {
    return this.getJobs(["delayed"], start, end);
  }
  getCompleted(start?: number, end?: number): Promise<Job<T>[]> {
    return this.getJobs(["completed"], start, end);
  }
  getFailed(start?: number, end?: number): Promise<Job<T>[]> {
    return this.getJobs(["failed"], start, end);
  }

  /** Jobs per state. `paused` is 0: a paused queue's jobs count as waiting (see `isPaused`). */
  async getJobCounts(): Promise<JobCounts> {
    const { counts } = await this.client.queue(this.name);
    return { ...counts, paused: 0 };
  }

  async pause(): Promise<void> {
    await this.client.pause(this.name);
  }

  async resume(): Promise<void> {
    await this.client.resume(this.name);
  }

  async isPaused(): Promise<boolean> {
    return (await this.client.queue(this.name)).paused;
  }

  /** Remove the waiting jobs (Bull's `empty`). */
  async empty(): Promise<void> {
    await this.client.drain(this.name);
  }

  /** Remove the jobs that entered `status` at least `grace` ms ago; their ids. */
  async clean(grace: number, status: JobState = "completed", limit?: number): Promise<string[]> {
    return this.client.clean(this.name, status, grace, limit);
  }

  /** Remove everything of the queue. */
  async obliterate(opts: { force?: boolean } = {}): Promise<void> {
    await this.client.obliterate(this.name, opts.force ?? false);
  }

  /** Nest calls it at shutdown: stop watching the queue's events. */
  beforeApplicationShutdown(): Promise<void> {
    return this.close();
  }

  /** Stop watching the queue's events (the client stays open: the module closes it). */
  close(): Promise<void> {
    this.watching?.abort();
    this.watching = undefined;
    return Promise.resolve();
  }

  private watch(): void {
    if (this.watching) return;
    const controller = (this.watching = new AbortController());
    void (async () => {
      try {
        for await (const event of this.client.watchEvents(this.name, { signal: controller.signal })) {
          await this.dispatch(event);
        }
      } catch (error) {
        if (controller.signal.aborted) return;
        this.watching = undefined;
        if (this.listenerCount("error")) this.emit("error", error);
      }
    })();
  }

  /** Emit an event the way Bull does, with the job as its first argument. */
  private async dispatch(event: Event): Promise<void> {
    const name = BULL_EVENTS[event.type];
    if (name === undefined || !this.listenerCount(name)) return;
    if (!event.jobId) {
      this.emit(name);
      return;
    }
    if (name === "waiting") {
      this.emit(name, event.jobId);
      return;
    }
    const job = await this.jobFor(event);
    if (name === "completed") this.emit(name, job, event.result);
    else if (name === "failed") this.emit(name, job, failureError(event));
    else if (name === "progress") this.emit(name, job, event.progress?.percent ?? event.progress?.value);
    else this.emit(name, job);
  }

  /** The job an event concerns: fresh from the broker, or (already removed) what the event says. */
  private async jobFor(event: Event): Promise<Job<T>> {
    let snapshot: BrokerJob | undefined;
    try {
      snapshot = await this.client.getJob(this.name, event.jobId);
    } catch (error) {
      if (!(error instanceof JobNotFound)) throw error;
    }
    if (snapshot) return Job.fromSnapshot<T>(this.client, snapshot);
    const job = new Job<T>(this.client, this.name, { id: event.jobId, name: event.name, data: undefined as T, opts: {} });
    if (event.type === "completed") job.returnvalue = event.result ?? null;
    job.failedReason = event.failure?.message;
    return job;
  }
}

/** The Error a `failed` listener gets: the failure's message, type name and stack. */
function failureError(event: Event): Error {
  const failure = event.failure;
  const error = new Error(failure?.message ?? "failed");
  error.name = failure?.errorType || failure?.reason || "Error";
  if (failure?.stack) error.stack = failure.stack;
  return error;
}
