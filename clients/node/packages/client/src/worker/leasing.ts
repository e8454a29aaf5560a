// The leasing loop: one long poll per queue for as many jobs as there are free slots.
//
// A poller holds no slot while its call is out: with several queues, two replies may bring more
// jobs than slots, and the surplus goes straight back (Release, no attempt spent), so an idle
// queue's long poll never keeps slots from a busy one.

import type { ServiceClient } from "../rpc.js";
import { fromServiceError, JobBrokerError } from "../errors.js";
import type { LeasedJob, WorkerService } from "../gen/jobbroker/v1/worker_service_pb.js";
import type { GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { info, warn } from "../log.js";
import { Backoff, sleep } from "../timing.js";
import { PERMANENT } from "./stream.js";

/** The most jobs one Lease call may ask for. */
const MAX_LEASE_JOBS = 1_000;
/** A Lease call's deadline is its long-poll wait plus this, so a hung broker is noticed. */
const LEASE_DEADLINE_MARGIN_MS = 10_000;

type WorkerMethods = typeof WorkerService extends { method: infer M extends GenServiceMethods } ? M : never;

/** What the leasing loop needs from the worker. */
export interface Slots {
  /** Jobs the worker can take now. */
  free(): number;
  /** Resolves when a slot may have come free (or the stream became ready). */
  changed(): Promise<void>;
  /** Whether the worker's stream is open (leases are renewed and signals arrive). */
  streamReady(): boolean;
  /** Run the jobs a reply brought. */
  accept(jobs: LeasedJob[]): void;
}

export class Leasing {
  private readonly stop = new AbortController();
  private loops: Promise<void>[] = [];
  calls = 0;
  leased = 0;

  constructor(
    private readonly service: ServiceClient<WorkerMethods>,
    private readonly queues: string[],
    private readonly workerId: string,
    private readonly leaseMs: number,
    private readonly waitMs: number,
    private readonly slots: Slots,
  ) {}

  /** Start one poller per queue; the promise rejects when the broker refuses the worker for good. */
  start(): Promise<void> {
    this.loops = this.queues.map((queue) => this.poll(queue));
    return Promise.all(this.loops).then(() => undefined);
  }

  /** Stop leasing (an open long poll is cancelled: the broker keeps its jobs). */
  async close(): Promise<void> {
    this.stop.abort();
    await Promise.allSettled(this.loops);
  }

  private async poll(queue: string): Promise<void> {
    const backoff = new Backoff();
    let failing = false;
    const signal = this.stop.signal;
    const stopped = aborted(signal);
    while (!signal.aborted) {
      if (this.slots.free() <= 0 || !this.slots.streamReady()) {
        await Promise.race([this.slots.changed(), stopped]);
        continue;
      }
      const want = Math.min(this.slots.free(), MAX_LEASE_JOBS);
      const request = { queue, workerId: this.workerId, maxJobs: want, waitMs: this.waitMs, leaseMs: this.leaseMs };
      let jobs: LeasedJob[];
      try {
        const deadline = Date.now() + this.waitMs + LEASE_DEADLINE_MARGIN_MS;
        jobs = (await this.service.unary("lease", request, { deadline }, signal)).jobs;
      } catch (failure) {
        if (signal.aborted) return;
        const error = fromServiceError(failure);
        if (error instanceof JobBrokerError && PERMANENT.has(error.code)) throw error;
        if (!failing) warn(`worker ${this.workerId}: Lease on ${queue} failed (${String(error)}); retrying`);
        failing = true;
        await sleep(backoff.next(), signal).catch(() => undefined);
        continue;
      }
      if (failing) info(`worker ${this.workerId}: leasing from ${queue} again`);
      failing = false;
      backoff.reset();
      this.calls++;
      this.leased += jobs.length;
      if (jobs.length) this.slots.accept(jobs);
    }
  }
}

function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((done) => {
    if (signal.aborted) done();
    else signal.addEventListener("abort", () => done(), { once: true });
  });
}
