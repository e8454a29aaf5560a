// The Node worker against a real broker: processors by name, concurrency, progress and logs,
// cancel and timeout through the AbortSignal, retries with backoff, graceful close.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import {
  Client,
  DoNotRetry,
  JobActive,
  type JobStopped,
  InvalidArgument,
  LeaseSuperseded,
  Worker,
  type Event,
  type WorkerJob,
  type WorkerOptions,
} from "@jobbroker/client";
import { WorkerService } from "@jobbroker/client/gen/jobbroker/v1/worker_service_pb";

import { eventually, queueName, sharedAddress, stopShared } from "./broker.js";
// The generic adapter, to make a worker call by hand (a stale lease token).
import { ServiceClient } from "../../packages/client/dist/rpc.js";
import { baseMetadata, openChannel } from "../../packages/client/dist/channel.js";
import { fromServiceError } from "../../packages/client/dist/errors.js";

let client: Client;
let address: string;
const workers: Worker[] = [];

function worker(queue: string, options: WorkerOptions = {}): Worker {
  const made = new Worker(queue, { address, wait: 1_000, grace: 2_000, ...options });
  workers.push(made);
  return made;
}

/** Resolves once the job's AbortSignal fired, with its reason. */
function stoppedWith(job: WorkerJob): Promise<JobStopped> {
  return new Promise((done) => {
    if (job.signal.aborted) done(job.signal.reason as JobStopped);
    else job.signal.addEventListener("abort", () => done(job.signal.reason as JobStopped), { once: true });
  });
}

before(async () => {
  address = await sharedAddress();
  client = new Client({ address });
});

after(async () => {
  await Promise.all(workers.map((w) => w.close(0)));
  client.close();
  await stopShared();
});

describe("worker", () => {
  it("runs processors by job name, at most `concurrency` at once", async () => {
    const queue = queueName();
    let running = 0;
    let most = 0;
    const w = worker(queue, { concurrency: 2 });
    const slow = async (job: WorkerJob<{ n: number }>) => {
      running++;
      most = Math.max(most, running);
      await new Promise((done) => setTimeout(done, 50));
      running--;
      return { name: job.name, n: job.data.n * 2 };
    };
    w.process("double", slow).process("twice", slow);
    await w.start();
    const added = await client.addBulk(queue, [1, 2, 3, 4, 5, 6].map((n) => ({ name: n % 2 ? "double" : "twice", data: { n } })));
    const results = await Promise.all(added.map((a) => client.wait(queue, a.jobId, { timeout: 20_000 })));
    assert.deepEqual(results, [1, 2, 3, 4, 5, 6].map((n) => ({ name: n % 2 ? "double" : "twice", n: n * 2 })));
    assert.equal(most, 2);
    assert.ok((await client.workers(queue)).some((info) => info.workerId === w.workerId));
    await w.close();
  });

  it("reports progress and log lines, seen by streamProgress and logs()", async () => {
    const queue = queueName();
    const w = worker(queue);
    w.process("tokens", async (job) => {
      job.log("starting");
      job.progress(10);
      await job.flush();
      job.progress(60, { tokens: ["Hello"] });
      job.log("halfway");
      await job.flush();
      return "done";
    });
    const { jobId } = await client.add(queue, "tokens");
    const seen: string[] = [];
    const following = (async () => {
      for await (const item of client.streamProgress(queue, jobId)) {
        if (item.kind === "event" && item.event.type === "progress") seen.push(JSON.stringify(item.event.progress));
      }
    })();
    await w.start();
    assert.equal(await client.wait(queue, jobId, { timeout: 20_000 }), "done");
    await following;
    assert.deepEqual(seen, [JSON.stringify({ percent: 10 }), JSON.stringify({ percent: 60, value: { tokens: ["Hello"] } })]);
    assert.deepEqual((await client.logs(queue, jobId)).lines, ["starting", "halfway"]);
    const job = await client.getJob(queue, jobId);
    assert.deepEqual(job.progress, { percent: 60, value: { tokens: ["Hello"] } });
    assert.equal(job.workerId, w.workerId);
    await w.close();
  });

  it("fires the job's AbortSignal on cancel; the job ends cancelled", async () => {
    const queue = queueName();
    const w = worker(queue);
    let reason: JobStopped | undefined;
    let started = false;
    w.process("long", async (job) => {
      started = true;
      reason = await stoppedWith(job);
      job.throwIfStopped();
    });
    await w.start();
    const { jobId } = await client.add(queue, "long", {}, { attempts: 3 });
    await eventually(() => started, 20_000, "the job started");
    assert.equal(await client.cancel(queue, jobId, "changed my mind"), "active");
    await assert.rejects(client.wait(queue, jobId, { timeout: 20_000 }), (e: Error) => e.name === "JobCancelled");
    assert.equal(reason?.stopReason, "cancel");
    assert.equal((await client.getJob(queue, jobId)).state, "cancelled");
    await w.close();
  });

  it("fires the AbortSignal when the attempt times out; the attempt fails TIMEOUT", async () => {
    const queue = queueName();
    const w = worker(queue, { lease: 1_000 });
    let reason: JobStopped | undefined;
    w.process("slow", async (job) => {
      reason = await stoppedWith(job);
      return "too late";
    });
    await w.start();
    const { jobId } = await client.add(queue, "slow", {}, { timeout: 1_200 });
    await assert.rejects(client.wait(queue, jobId, { timeout: 20_000 }), (e: Error) => e.name === "JobFailed");
    const job = await client.getJob(queue, jobId);
    assert.equal(job.failure?.reason, "TIMEOUT");
    assert.equal(reason?.stopReason, "lost");
    assert.equal(reason?.detail, "TIMEOUT");
    await w.close();
  });

  it("hands every attempt the trace context the job was added with", async () => {
    const queue = queueName();
    const w = worker(queue);
    const seen: unknown[] = [];
    w.process("traced", (job) => {
      seen.push(job.traceContext);
      if (job.attempt < 2) throw new Error("once more");
      return null;
    });
    w.process("untraced", (job) => {
      seen.push(job.traceContext);
      return null;
    });
    await w.start();
    const traceContext = { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", tracestate: "k=v" };
    const traced = await client.add(queue, "traced", {}, { attempts: 2, traceContext });
    await client.wait(queue, traced.jobId, { timeout: 20_000 });
    const plain = await client.add(queue, "untraced", {});
    await client.wait(queue, plain.jobId, { timeout: 20_000 });
    assert.deepEqual(seen, [traceContext, traceContext, undefined]);
    await w.close();
  });

  it("retries a failed attempt after its backoff, then completes", async () => {
    const queue = queueName();
    const w = worker(queue);
    const attempts: { attempt: number; made: number; at: number }[] = [];
    w.process("flaky", (job) => {
      attempts.push({ attempt: job.attempt, made: job.attemptsMade, at: Date.now() });
      if (job.attempt < 3) throw new TypeError(`attempt ${job.attempt} fails`);
      return { ok: job.attempt };
    });
    await w.start();
    const events: Event[] = [];
    const { jobId } = await client.add(queue, "flaky", {}, { attempts: 3, backoff: { type: "fixed", delay: 300 } });
    const watching = (async () => {
      for await (const event of client.watchEvents(queue, { afterEventId: "0-0" })) {
        if (event.jobId === jobId) events.push(event);
        if (event.type === "completed") return;
      }
    })();
    assert.deepEqual(await client.wait(queue, jobId, { timeout: 20_000 }), { ok: 3 });
    await watching;
    assert.deepEqual(
      attempts.map((a) => [a.attempt, a.made]),
      [[1, 0], [2, 1], [3, 2]],
    );
    for (let i = 1; i < attempts.length; i++) {
      assert.ok((attempts[i]?.at ?? 0) - (attempts[i - 1]?.at ?? 0) >= 250, "each retry waited its backoff");
    }
    const failed = events.filter((e) => e.type === "failed");
    assert.deepEqual(failed.map((e) => e.state), ["delayed", "delayed"]);
    assert.equal(failed[0]?.failure?.errorType, "TypeError");
    assert.equal(failed[0]?.failure?.message, "attempt 1 fails");
    await w.close();
  });

  it("fails a job for good on DoNotRetry, and a job nobody processes", async () => {
    const queue = queueName();
    const w = worker(queue);
    class InvalidAddress extends DoNotRetry {}
    w.process("send", () => {
      throw new InvalidAddress("no address");
    });
    await w.start();
    const sent = await client.add(queue, "send", {}, { attempts: 5 });
    const other = await client.add(queue, "unknown", {}, { attempts: 5 });
    for (const { jobId } of [sent, other]) {
      await assert.rejects(client.wait(queue, jobId, { timeout: 20_000 }), (e: Error) => e.name === "JobFailed");
    }
    const failedSend = await client.getJob(queue, sent.jobId);
    assert.equal(failedSend.attemptsMade, 1);
    assert.equal(failedSend.failure?.errorType, "InvalidAddress");
    const failedOther = await client.getJob(queue, other.jobId);
    assert.equal(failedOther.failure?.errorType, "UnknownJobName");
    assert.match(failedOther.failure?.message ?? "", /"send"/);
    await w.close();
  });

  it("fails an attempt whose result cannot be encoded", async () => {
    const queue = queueName();
    const w = worker(queue);
    w.process(() => ({ big: 10n }));
    await w.start();
    const { jobId } = await client.add(queue, "x");
    await assert.rejects(client.wait(queue, jobId, { timeout: 20_000 }), (e: Error) => e.name === "JobFailed");
    assert.equal((await client.getJob(queue, jobId)).failure?.errorType, "TypeError");
    await w.close();
  });

  it("renews leases while a job runs longer than its lease", async () => {
    const queue = queueName();
    const w = worker(queue, { lease: 1_000 });
    w.process(async () => {
      await new Promise((done) => setTimeout(done, 2_500));
      return "kept";
    });
    await w.start();
    const { jobId } = await client.add(queue, "x");
    assert.equal(await client.wait(queue, jobId, { timeout: 20_000 }), "kept");
    assert.equal((await client.getJob(queue, jobId)).stalledCount, 0);
    await w.close();
  });

  it("closes gracefully: finishes what it can within the grace, hands the rest back", async () => {
    const queue = queueName();
    const w = worker(queue, { concurrency: 2 });
    const started: string[] = [];
    let stopReason: string | undefined;
    w.process("quick", async (job) => {
      started.push(job.id);
      await new Promise((done) => setTimeout(done, 200));
      return "finished";
    });
    w.process("endless", async (job) => {
      started.push(job.id);
      stopReason = (await stoppedWith(job)).stopReason;
      job.throwIfStopped();
    });
    await w.start();
    const quick = await client.add(queue, "quick");
    const endless = await client.add(queue, "endless");
    await eventually(() => started.length === 2, 20_000, "both jobs started");
    await w.close(500);
    assert.equal(stopReason, "shutdown");
    assert.equal((await client.getJob(queue, quick.jobId)).state, "completed");
    const back = await client.getJob(queue, endless.jobId);
    assert.equal(back.state, "waiting");
    assert.equal(back.attemptsMade, 0, "handing back spends no attempt");
    assert.equal(w.active, 0);
  });

  it("refuses to remove an active job, and a stale or made-up lease changes nothing", async () => {
    const queue = queueName();
    const { jobId } = await client.add(queue, "x");
    const channel = openChannel({ address });
    const service = new ServiceClient(channel, WorkerService, baseMetadata(undefined));
    const lease = async () => {
      const leased = await service.unary("lease", { queue, workerId: "test:1:abc", maxJobs: 1, waitMs: 5_000, leaseMs: 30_000 });
      assert.equal(leased.jobs[0]?.jobId, jobId);
      return leased.jobs[0]?.token ?? "";
    };
    try {
      const first = await lease();
      await assert.rejects(client.remove(queue, jobId), JobActive);
      await service.unary("release", { queue, jobId, token: first });
      const second = await lease();
      // A real token of an earlier lease is superseded; one the broker never issued (here a
      // fence above the job's) is invalid.
      const stale = await service.unary("complete", { queue, jobId, token: first }).catch((e: unknown) => fromServiceError(e));
      // (fromServiceError comes from the package's dist by path: compare class names.)
      assert.equal(stale?.constructor.name, LeaseSuperseded.name, String(stale));
      const forged = await service.unary("complete", { queue, jobId, token: "99-nottheone" }).catch((e: unknown) => fromServiceError(e));
      assert.equal(forged?.constructor.name, InvalidArgument.name, String(forged));
      assert.equal((forged as InvalidArgument).field, "token");
      assert.equal((await client.getJob(queue, jobId)).state, "active");
      await service.unary("release", { queue, jobId, token: second });
      assert.equal((await client.getJob(queue, jobId)).state, "waiting");
    } finally {
      channel.close();
    }
  });
});
