// The worker SDK: register processors by job name, then run.
//
//   const worker = new Worker("emails", { concurrency: 10 });
//   worker.process("send", async (job) => { job.progress(50); return { sent: true }; });
//   await worker.run();           // until close(), e.g. on SIGTERM
//
// The worker is a gRPC client of WorkerService and never talks to Redis. See README.md.

import { randomBytes } from "node:crypto";
import { hostname } from "node:os";

import type * as grpc from "@grpc/grpc-js";

import { baseMetadata, openChannel, target, DEFAULT_ADDRESS, type ConnectionOptions } from "../channel.js";
import { type JobBrokerError, Status } from "../errors.js";
import { WorkerService, type LeasedJob, type LeaseStatus, type Outcome, type OutcomeResult, type Signal } from "../gen/jobbroker/v1/worker_service_pb.js";
import { SignalType } from "../gen/jobbroker/v1/worker_service_pb.js";
import { error as logError, info, warn } from "../log.js";
import { ServiceClient } from "../rpc.js";
import { complete, DoNotRetry, fail, failure, Lease, leaseKey, release, stopped, unknownName, type WorkerJob } from "./job.js";
import { Leasing } from "./leasing.js";
import { WorkerStream, type StreamListener } from "./stream.js";

/** A processor: gets the job, returns (or resolves with) its result; throwing fails the attempt. */
export type Processor<Data = unknown, Result = unknown> = (job: WorkerJob<Data>) => Result | Promise<Result>;

/** How a worker connects and runs. */
export interface WorkerOptions extends ConnectionOptions {
  /** Processors running at once at most (default 10). */
  concurrency?: number;
  /** How long a lease lasts without renewal, in ms (1,000-3,600,000; default 30,000); renewed every third. */
  lease?: number;
  /** On close, how long running jobs may take to finish before they are given back, in ms (default 30,000). */
  grace?: number;
  /** How long one Lease long poll waits for a job, in ms (0-300,000; default 5,000). */
  wait?: number;
  /** Unique per process; default `host:pid:random`. */
  workerId?: string;
}

const QUEUE_NAME = /^[A-Za-z0-9._:-]{1,128}$/;
/** At shutdown, how long outcomes may take to be acknowledged before the worker gives up. */
const FLUSH_TIMEOUT_MS = 5_000;
/** At shutdown, how long stopped processors get to unwind before their jobs are given back. */
const UNWIND_MS = 1_000;
/** How long a signal for a lease not seen yet is kept (it may overtake the Lease reply). */
const EARLY_SIGNAL_TTL_MS = 30_000;
/** Refusals of an item meaning the lease is gone. */
const GONE = new Set<number>([Status.FAILED_PRECONDITION, Status.NOT_FOUND]);
/** Refusals of a result meaning: not acceptable (over a limit, not valid JSON). */
const REFUSED = new Set<number>([Status.INVALID_ARGUMENT, Status.RESOURCE_EXHAUSTED]);

/** `host:pid:random`, unique per worker process. */
export function defaultWorkerId(): string {
  const host = hostname().replace(/[^A-Za-z0-9._:-]/g, "-").slice(0, 200) || "host";
  return `${host}:${process.pid}:${randomBytes(3).toString("hex")}`;
}

function inRange(value: number, low: number, high: number, what: string): number {
  if (!Number.isInteger(value) || value < low || value > high) throw new RangeError(`${what}: ${low} to ${high} (got ${value})`);
  return value;
}

/**
 * Leases jobs from one or more queues and runs the processor registered for each job name.
 * Up to `concurrency` processors run at once. Leases are renewed for you; progress, logs and
 * outcomes travel batched on one stream. `close()` stops leasing, gives running jobs `grace`
 * ms to finish, and hands the rest back without spending an attempt.
 */
export class Worker implements StreamListener {
  /** The queues this worker leases from. */
  readonly queues: string[];
  /** The broker's gRPC target. */
  readonly target: string;
  readonly concurrency: number;
  readonly leaseMs: number;
  readonly graceMs: number;
  readonly waitMs: number;
  /** This worker's id, as the broker records it on the jobs it runs. */
  readonly workerId: string;
  private readonly processors = new Map<string, Processor>();
  private fallback: Processor | undefined;
  private readonly leases = new Map<string, Lease>();
  private readonly early = new Map<string, { signal: Signal; at: number }>();
  private running = 0;
  private waiters: (() => void)[] = [];
  private channel: grpc.Client | undefined;
  private stream: WorkerStream | undefined;
  private leasing: Leasing | undefined;
  private ticker: NodeJS.Timeout | undefined;
  private main: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  /** What ended the worker when the broker refused it. */
  private failure: Error | undefined;

  constructor(
    queues: string | readonly string[],
    private readonly options: WorkerOptions = {},
  ) {
    const names = typeof queues === "string" ? [queues] : [...queues];
    if (names.length === 0) throw new RangeError("a worker needs at least one queue");
    for (const name of names) {
      if (!QUEUE_NAME.test(name)) throw new RangeError(`queue ${JSON.stringify(name)}: use 1-128 characters from A-Z a-z 0-9 . _ : -`);
    }
    this.queues = [...new Set(names)];
    this.target = target(options.address ?? DEFAULT_ADDRESS);
    this.concurrency = inRange(options.concurrency ?? 10, 1, 10_000, "concurrency");
    this.leaseMs = inRange(options.lease ?? 30_000, 1_000, 3_600_000, "lease");
    this.waitMs = inRange(options.wait ?? 5_000, 0, 300_000, "wait");
    this.graceMs = Math.max(0, options.grace ?? 30_000);
    this.workerId = options.workerId ?? defaultWorkerId();
  }

  /**
   * Register `processor` for jobs named `name` (Bull's `queue.process(name, fn)`); without a
   * name, for every job no named processor takes. What it returns is the job's result; what
   * it throws fails the attempt (retried while attempts are left; `DoNotRetry` fails it for good).
   */
  process<Data = unknown, Result = unknown>(name: string, processor: Processor<Data, Result>): this;
  process<Data = unknown, Result = unknown>(processor: Processor<Data, Result>): this;
  process(nameOrProcessor: string | Processor, processor?: Processor): this {
    if (this.main) throw new Error("register processors before the worker starts");
    if (typeof nameOrProcessor === "function") {
      if (this.fallback) throw new Error("a default processor is already registered");
      this.fallback = nameOrProcessor;
    } else {
      if (processor === undefined) throw new TypeError("process(name, processor): the processor is missing");
      if (this.processors.has(nameOrProcessor)) throw new Error(`a processor for ${JSON.stringify(nameOrProcessor)} is already registered`);
      this.processors.set(nameOrProcessor, processor);
    }
    return this;
  }

  /** Leases the worker holds now (jobs running or being reported). */
  get active(): number {
    return this.leases.size;
  }

  /**
   * Start serving in the background. Resolves once the worker's stream is open (its first
   * message acknowledged); rejects when the broker refuses the worker (a bad token, say).
   */
  async start(): Promise<void> {
    if (this.main) throw new Error("this worker was started already");
    if (this.processors.size === 0 && !this.fallback) throw new Error("register at least one processor before starting the worker");
    const channel = (this.channel = openChannel({ ...this.options, address: this.target, channelOptions: {
      "grpc.max_receive_message_length": 256 * 1024 * 1024,
      ...this.options.channelOptions,
    } }));
    const service = new ServiceClient(channel, WorkerService, baseMetadata(this.options.token));
    const stream = (this.stream = new WorkerStream(() => service.bidi("reportProgress"), this.workerId, this.queues, this.leaseMs, this));
    this.leasing = new Leasing(service, this.queues, this.workerId, this.leaseMs, this.waitMs, {
      free: () => Math.min(this.concurrency - this.running, 2 * this.concurrency - this.leases.size),
      changed: () => new Promise((done) => this.waiters.push(done)),
      streamReady: () => stream.isReady,
      accept: (jobs) => this.accept(jobs),
    });
    const fatal = new Promise<never>((_, reject) => {
      stream.onFatal = (error: JobBrokerError) => reject(error);
    });
    fatal.catch(() => undefined);
    stream.start();
    void stream.whenReady().then(() => this.wake());
    this.ticker = setInterval(() => this.tick(), Math.min(1_000, Math.max(50, this.leaseMs / 6)));
    this.ticker.unref();
    const leasing = this.leasing.start();
    this.main = Promise.race([leasing, fatal]).catch(async (error: unknown) => {
      this.failure = error instanceof Error ? error : new Error(String(error));
      logError(`worker ${this.workerId}: ${String(error)}; stopping`);
      await this.shutdown(0);
      throw error;
    });
    this.main.catch(() => undefined);
    info(`worker ${this.workerId} serving ${this.queues.join(", ")} at ${this.target}`);
    await Promise.race([stream.whenReady(), this.main]);
    // Closing on a refusal also wakes whoever waits for the stream: say why it closed.
    if (this.failure !== undefined) throw this.failure;
  }

  /** Start, and resolve once the worker is closed (reject if the broker refused it). */
  async run(): Promise<void> {
    await this.start();
    await this.main;
    await this.closing;
  }

  /**
   * Stop leasing, give running jobs `grace` ms (default: the worker's) to finish, then stop the
   * others (their AbortSignal fires) and hand them back without spending an attempt; flush the
   * stream and close. Resolves once all that is done.
   */
  close(grace = this.graceMs): Promise<void> {
    if (!this.main) return Promise.resolve();
    return this.shutdown(grace);
  }

  private shutdown(grace: number): Promise<void> {
    this.closing ??= this.finish(grace);
    return this.closing;
  }

  private async finish(grace: number): Promise<void> {
    await this.leasing?.close();
    if (this.running) info(`worker ${this.workerId}: waiting for ${this.running} running job(s)`);
    await this.idle(grace);
    const running = [...this.leases.values()].filter((lease) => !lease.handlerDone);
    if (running.length) {
      warn(`worker ${this.workerId}: grace period over, stopping ${running.length} job(s) and giving them back`);
      for (const lease of running) lease.stop("shutdown", "worker shutting down");
      await this.idle(UNWIND_MS);
      for (const lease of running) {
        // Processors that ignore their signal: hand the job back; what they do later is not reported.
        if (!lease.handlerDone) {
          lease.stopReason = "lost";
          this.stream?.outcome(lease, release(lease));
        }
      }
    }
    await this.stream?.close(FLUSH_TIMEOUT_MS);
    clearInterval(this.ticker);
    this.channel?.close();
    info(
      `worker ${this.workerId} stopped (${this.leasing?.leased ?? 0} jobs leased in ${this.leasing?.calls ?? 0} Lease calls, ` +
        `${this.stream?.sentOutcomes ?? 0} outcomes sent in ${this.stream?.sentMessages ?? 0} stream messages)`,
    );
  }

  /** Wait until no processor runs, or `withinMs` passed. */
  private async idle(withinMs: number): Promise<void> {
    const deadline = performance.now() + withinMs;
    while (this.running && performance.now() < deadline) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((done) => this.waiters.push(done)),
        new Promise<void>((done) => (timer = setTimeout(done, deadline - performance.now()))),
      ]);
      clearTimeout(timer);
    }
  }

  private wake(): void {
    for (const done of this.waiters.splice(0)) done();
  }

  // --- running jobs --------------------------------------------------------------------

  private accept(jobs: LeasedJob[]): void {
    const stream = this.stream;
    if (!stream) return;
    const renewAt = performance.now() + this.leaseMs / 3;
    for (const leased of jobs) {
      if (this.closing || this.concurrency - this.running <= 0) {
        // Several queues answered at once (or the worker is closing): more jobs than slots.
        stream.outcome(undefined, release(new Lease(leased, this.workerId, stream)));
        continue;
      }
      const lease = new Lease(leased, this.workerId, stream);
      lease.renewAt = renewAt;
      this.leases.set(lease.key, lease);
      const processor = this.processors.get(leased.name) ?? this.fallback;
      if (processor === undefined) {
        lease.handlerDone = true;
        stream.outcome(lease, unknownName(lease, this.workerId, [...this.processors.keys()]));
        continue;
      }
      const early = this.early.get(lease.key);
      if (early) {
        this.early.delete(lease.key);
        this.applySignal(lease, early.signal);
      }
      this.running++;
      void this.runJob(lease, processor);
    }
  }

  private async runJob(lease: Lease, processor: Processor): Promise<void> {
    let outcome: Outcome | undefined;
    try {
      const result = await processor(lease.job);
      outcome = lease.stopReason === "lost" ? undefined : complete(lease, result);
    } catch (error) {
      // A processor that throws after it was asked to stop stopped because it was asked to.
      if (lease.stopReason !== undefined) outcome = stopped(lease);
      else outcome = failure(lease, error, error instanceof DoNotRetry);
    }
    lease.handlerDone = true;
    this.running--;
    this.wake();
    if (outcome === undefined || lease.stopReason === "lost") this.settle(lease);
    else this.stream?.outcome(lease, outcome);
  }

  /** The lease is over for this worker. */
  private settle(lease: Lease): void {
    if (lease.settled) return;
    lease.settled = true;
    this.leases.delete(lease.key);
    this.stream?.forget(lease);
    this.wake();
  }

  /** Renew leases a third into their duration; forget stale early signals. */
  private tick(): void {
    const now = performance.now();
    for (const lease of this.leases.values()) {
      if (lease.renewAt <= now && !lease.settled && lease.stopReason !== "lost") {
        lease.renewAt = now + this.leaseMs / 3;
        this.stream?.renew(lease);
      }
    }
    for (const [key, { at }] of this.early) if (now - at > EARLY_SIGNAL_TTL_MS) this.early.delete(key);
  }

  // --- the stream's answers (StreamListener) -------------------------------------------

  private applySignal(lease: Lease, signal: Signal): void {
    if (lease.handlerDone) return;
    const where = `job ${lease.leased.queue}/${lease.leased.jobId}`;
    if (signal.type === SignalType.CANCEL_REQUESTED) {
      info(`worker ${this.workerId}: ${where} cancelled`);
      lease.stop("cancel", signal.reason);
    } else if (signal.type === SignalType.LEASE_LOST) {
      warn(`worker ${this.workerId}: lease of ${where} lost (${signal.reason}); stopping it`);
      lease.stop("lost", signal.reason);
      this.stream?.forget(lease);
    }
  }

  /** @internal */
  signal(signal: Signal): void {
    const key = leaseKey(signal.queue, signal.jobId, signal.fence);
    const lease = this.leases.get(key);
    if (lease) this.applySignal(lease, signal);
    else if (this.early.size < 10_000) this.early.set(key, { signal, at: performance.now() });
  }

  /** @internal */
  updated(lease: Lease, status: LeaseStatus): void {
    const error = status.error;
    if (!error) {
      lease.expiresAtMs = Number(status.leaseExpiresAtMs);
      return;
    }
    if (GONE.has(error.code)) {
      this.applySignal(lease, { queue: lease.leased.queue, jobId: lease.leased.jobId, fence: lease.leased.fence, type: SignalType.LEASE_LOST, reason: error.reason } as Signal);
      return;
    }
    warn(`worker ${this.workerId}: report for job ${lease.leased.queue}/${lease.leased.jobId} refused: ${error.reason} ${error.message}`);
    lease.renewAt = 0; // the renewal in it was refused too: renew at the next tick
  }

  /** @internal */
  outcomeResult(lease: Lease | undefined, outcome: Outcome, result: OutcomeResult): void {
    const error = result.error;
    if (error) {
      if (lease && outcome.kind.case === "complete" && REFUSED.has(error.code)) {
        // The result is over a limit or not valid JSON: fail the attempt instead, or the job
        // would sit active until its lease ran out.
        this.stream?.outcome(lease, fail(lease, "ResultRejected", `the broker refused the job's result: ${error.message}`));
        return;
      }
      warn(`worker ${this.workerId}: ${outcome.kind.case ?? "outcome"} of job ${result.queue}/${result.jobId} refused: ${error.reason} ${error.message}`);
    }
    if (lease) this.settle(lease);
  }
}
