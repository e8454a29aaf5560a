// The worker's one ReportProgress stream: batched reports out, acknowledgements and signals in.
//
// Outcomes, progress, log lines and renewals wait in an outbox and leave in one message whenever
// the stream has room: at most WINDOW messages are unacknowledged at a time, so an idle worker
// sends at once and a busy one packs what piled up meanwhile into the next message. Messages
// whose acknowledgement never came (broker restart) are sent again on the next stream; a
// LEASE_EXPIRED answer to a repeat is then expected and harmless.

import { create } from "@bufbuild/protobuf";
import type { ClientDuplexStream } from "@grpc/grpc-js";

import { fromServiceError, JobBrokerError, Status } from "../errors.js";
import type { Payload } from "../gen/jobbroker/v1/job_pb.js";
import {
  LeaseUpdateSchema,
  ReportProgressRequestSchema,
  type LeaseStatus,
  type Outcome,
  type OutcomeResult,
  type ReportProgressRequest,
  type ReportProgressResponse,
  type Signal,
} from "../gen/jobbroker/v1/worker_service_pb.js";
import { debug, info, warn } from "../log.js";
import { Backoff } from "../timing.js";
import type { Lease, Reports } from "./job.js";

const WINDOW = 2;
/** Outcomes, and updates, per message at most. */
const MAX_ITEMS = 500;
/** An idle stream sends an empty message this often, to notice a dead connection. */
const HEARTBEAT_MS = 10_000;
/** A stream whose oldest message waits longer than this for its acknowledgement is replaced. */
const ACK_TIMEOUT_MS = 20_000;
/** Wait before sending again an item the broker answered UNAVAILABLE (Redis down). */
const ITEM_RETRY_MS = 500;

/** Status codes that retrying cannot fix; every other one means reconnect and go on. */
export const PERMANENT: ReadonlySet<Status> = new Set([
  Status.INVALID_ARGUMENT,
  Status.UNIMPLEMENTED,
  Status.UNAUTHENTICATED,
  Status.PERMISSION_DENIED,
  Status.OUT_OF_RANGE,
]);

/** What the worker does with the broker's answers. */
export interface StreamListener {
  updated(lease: Lease, status: LeaseStatus): void;
  outcomeResult(lease: Lease | undefined, outcome: Outcome, result: OutcomeResult): void;
  signal(signal: Signal): void;
}

interface Update {
  percent?: number;
  value?: Payload;
  logs: string[];
}

interface Sent {
  at: number;
  updates: [Lease, Update][];
  outcomes: [Lease | undefined, Outcome][];
}

type Call = ClientDuplexStream<ReportProgressRequest, ReportProgressResponse>;

/** One worker's stream, reconnected until `close()`. */
export class WorkerStream implements Reports {
  private readonly outcomes: [Lease | undefined, Outcome][] = [];
  private readonly updates = new Map<Lease, Update>();
  private readonly inflight = new Map<bigint, Sent>();
  private readonly flushes = new Map<Lease, (() => void)[]>();
  private readonly drainedWaiters: (() => void)[] = [];
  private readonly readyWaiters: (() => void)[] = [];
  private seq = 0n;
  private helloSeq = 0n;
  private retrying = 0;
  private call: Call | undefined;
  private closed = false;
  private failing = false;
  private lastSent = 0;
  private ready = false;
  private readonly backoff = new Backoff();
  private timer: NodeJS.Timeout | undefined;
  private loop: Promise<void> | undefined;
  /** The error that ended the stream for good (a refusal retrying cannot fix). */
  fatal: JobBrokerError | undefined;
  onFatal: (error: JobBrokerError) => void = () => undefined;
  sentMessages = 0;
  sentOutcomes = 0;

  constructor(
    private readonly open: () => Call,
    private readonly workerId: string,
    private readonly queues: string[],
    private readonly leaseMs: number,
    private readonly listener: StreamListener,
  ) {}

  // --- the outbox ----------------------------------------------------------------------

  /** Queue an outcome (lease undefined: a lease the worker never ran, given back). */
  outcome(lease: Lease | undefined, outcome: Outcome): void {
    this.outcomes.push([lease, outcome]);
    this.pump();
  }

  progress(lease: Lease, percent: number | undefined, value: Payload | undefined): void {
    const update = this.update(lease);
    if (percent !== undefined) update.percent = percent;
    if (value !== undefined) update.value = value;
    this.pump();
  }

  log(lease: Lease, line: string): void {
    this.update(lease).logs.push(line);
    this.pump();
  }

  /** Renew a lease with the next message (any update of a lease renews it). */
  renew(lease: Lease): void {
    this.update(lease);
    this.pump();
  }

  private update(lease: Lease): Update {
    let update = this.updates.get(lease);
    if (update === undefined) {
      update = { logs: [] };
      this.updates.set(lease, update);
    }
    return update;
  }

  /** Drop the pending reports of a lease that is gone. */
  forget(lease: Lease): void {
    this.updates.delete(lease);
    this.resolveFlushes(lease);
  }

  flush(lease: Lease): Promise<void> {
    if (!this.holds(lease) || this.closed) return Promise.resolve();
    return new Promise((done) => {
      const waiting = this.flushes.get(lease) ?? [];
      waiting.push(done);
      this.flushes.set(lease, waiting);
    });
  }

  private holds(lease: Lease): boolean {
    if (this.updates.has(lease)) return true;
    for (const sent of this.inflight.values()) if (sent.updates.some(([l]) => l === lease)) return true;
    return false;
  }

  private resolveFlushes(lease: Lease): void {
    for (const done of this.flushes.get(lease) ?? []) done();
    this.flushes.delete(lease);
  }

  /** No report waits to be sent or acknowledged. */
  get idle(): boolean {
    if (this.outcomes.length || this.updates.size || this.retrying) return false;
    for (const sent of this.inflight.values()) if (sent.updates.length || sent.outcomes.length) return false;
    return true;
  }

  /** Resolves while a stream is open and the broker acknowledged its first message. */
  whenReady(): Promise<void> {
    if (this.ready) return Promise.resolve();
    return new Promise((done) => this.readyWaiters.push(done));
  }

  get isReady(): boolean {
    return this.ready;
  }

  private take(): ReportProgressRequest {
    this.seq += 1n;
    const request = create(ReportProgressRequestSchema, { seq: this.seq });
    const updates: [Lease, Update][] = [];
    const renewAt = performance.now() + this.leaseMs / 3;
    for (const [lease, update] of this.updates) {
      if (updates.length >= MAX_ITEMS) break;
      this.updates.delete(lease);
      if (lease.settled || lease.stopReason === "lost") continue;
      request.updates.push(
        create(LeaseUpdateSchema, {
          queue: lease.leased.queue,
          jobId: lease.leased.jobId,
          token: lease.token,
          leaseMs: this.leaseMs,
          logLines: update.logs,
          ...(update.percent === undefined ? {} : { percent: update.percent }),
          ...(update.value === undefined ? {} : { value: update.value }),
        }),
      );
      lease.renewAt = renewAt;
      updates.push([lease, update]);
    }
    const outcomes = this.outcomes.splice(0, MAX_ITEMS);
    for (const [, outcome] of outcomes) request.outcomes.push(outcome);
    this.inflight.set(this.seq, { at: performance.now(), updates, outcomes });
    this.sentMessages++;
    this.sentOutcomes += outcomes.length;
    return request;
  }

  /** Put the items of an unacknowledged message back in front of the outbox. */
  private requeue(sent: Sent): void {
    this.outcomes.unshift(...sent.outcomes);
    for (const [lease, update] of sent.updates) this.mergeOlder(lease, update);
  }

  private mergeOlder(lease: Lease, older: Update): void {
    const pending = this.updates.get(lease);
    if (pending === undefined) {
      this.updates.set(lease, older);
      return;
    }
    pending.logs.unshift(...older.logs);
    if (pending.percent === undefined && older.percent !== undefined) pending.percent = older.percent;
    if (pending.value === undefined && older.value !== undefined) pending.value = older.value;
  }

  /** Send what waits, as far as the window allows. */
  private pump(): void {
    const call = this.call;
    if (call === undefined || !this.ready || this.closed) return;
    while (this.inflight.size < WINDOW && (this.outcomes.length || this.updates.size)) this.write(call, this.take());
  }

  private write(call: Call, request: ReportProgressRequest): void {
    this.lastSent = performance.now();
    call.write(request);
  }

  // --- acknowledgements ----------------------------------------------------------------

  private onResponse(response: ReportProgressResponse): void {
    for (const signal of response.signals) this.listener.signal(signal);
    const sent = response.seq ? this.inflight.get(response.seq) : undefined;
    if (sent === undefined) return;
    this.inflight.delete(response.seq);
    if (response.seq === this.helloSeq) {
      if (this.failing) info(`worker ${this.workerId}: stream to the broker open again`);
      this.failing = false;
      this.backoff.reset();
      this.ready = true;
      for (const done of this.readyWaiters.splice(0)) done();
    }
    sent.updates.forEach(([lease, update], i) => {
      const status = response.leases[i];
      if (status === undefined) return;
      if (status.error?.code === Status.UNAVAILABLE) {
        this.later(() => {
          if (!lease.finished && !lease.settled) this.mergeOlder(lease, update);
        });
        return;
      }
      this.listener.updated(lease, status);
      if (this.flushes.has(lease) && !this.holds(lease)) this.resolveFlushes(lease);
    });
    sent.outcomes.forEach(([lease, outcome], i) => {
      const result = response.outcomes[i];
      if (result === undefined) return;
      if (result.error?.code === Status.UNAVAILABLE) {
        this.later(() => this.outcomes.push([lease, outcome]));
        return;
      }
      this.listener.outcomeResult(lease, outcome, result);
    });
    if (this.idle) for (const done of this.drainedWaiters.splice(0)) done();
    this.pump();
  }

  private later(action: () => void): void {
    this.retrying++;
    setTimeout(() => {
      this.retrying--;
      action();
      this.pump();
    }, ITEM_RETRY_MS).unref();
  }

  // --- the connection ------------------------------------------------------------------

  /** Open the stream (and reopen it whenever it breaks) until `close()`. */
  start(): void {
    this.timer = setInterval(() => this.watch(), 1_000);
    this.timer.unref();
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    while (!this.closed) {
      const why = await this.session();
      this.ready = false;
      this.call = undefined;
      for (const seq of [...this.inflight.keys()].sort((a, b) => (a > b ? -1 : 1))) {
        const sent = this.inflight.get(seq);
        this.inflight.delete(seq);
        if (sent) this.requeue(sent);
      }
      if (this.closed || this.fatal) return;
      (this.failing ? debug : warn)(`worker ${this.workerId}: stream to the broker lost (${why}); reconnecting`);
      this.failing = true;
      await new Promise((done) => setTimeout(done, this.backoff.next()));
    }
  }

  /** One stream, until it ends; why it ended. */
  private session(): Promise<string> {
    const call = this.open();
    this.call = call;
    return new Promise((done) => {
      let over = false;
      const end = (why: string): void => {
        if (over) return;
        over = true;
        call.removeAllListeners("data");
        call.cancel();
        done(why);
      };
      call.on("data", (response: ReportProgressResponse) => this.onResponse(response));
      call.on("error", (failure: unknown) => {
        const error = fromServiceError(failure);
        if (error instanceof JobBrokerError && PERMANENT.has(error.code) && !this.closed) {
          this.fatal = error;
          this.onFatal(error);
        }
        end(error instanceof Error ? error.message : String(error));
      });
      call.on("end", () => end("the broker ended the stream"));
      call.on("close", () => end("the stream closed"));
      this.seq += 1n;
      this.helloSeq = this.seq;
      this.inflight.set(this.seq, { at: performance.now(), updates: [], outcomes: [] });
      this.write(call, create(ReportProgressRequestSchema, { seq: this.seq, workerId: this.workerId, queues: this.queues }));
    });
  }

  /** Every second: a heartbeat on an idle stream, and the acknowledgement watchdog. */
  private watch(): void {
    const call = this.call;
    if (call === undefined) return;
    const now = performance.now();
    let oldest = Infinity;
    for (const sent of this.inflight.values()) oldest = Math.min(oldest, sent.at);
    if (now - oldest > ACK_TIMEOUT_MS) {
      warn(`worker ${this.workerId}: no acknowledgement for ${ACK_TIMEOUT_MS / 1000} s; reconnecting`);
      call.cancel();
      return;
    }
    if (this.ready && this.inflight.size === 0 && now - this.lastSent >= HEARTBEAT_MS) this.write(call, this.take());
  }

  /** Wait up to `withinMs` for everything queued to be acknowledged, then end the stream. */
  async close(withinMs: number): Promise<void> {
    if (this.closed) return;
    if (!this.idle && !this.fatal) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((done) => this.drainedWaiters.push(done)),
        new Promise<void>((done) => (timer = setTimeout(done, withinMs))),
      ]);
      clearTimeout(timer);
    }
    if (!this.idle) {
      const unsent = this.outcomes.length + [...this.inflight.values()].reduce((n, s) => n + s.outcomes.length, 0);
      warn(
        `worker ${this.workerId}: closing with ${unsent} outcome(s) not acknowledged by the broker; ` +
          "their leases will expire and the jobs run again",
      );
    }
    this.closed = true;
    clearInterval(this.timer);
    this.call?.end();
    this.call?.cancel();
    await this.loop;
    for (const lease of [...this.flushes.keys()]) this.resolveFlushes(lease);
    for (const done of this.readyWaiters.splice(0)) done();
  }
}
