// Every call of Client against a real broker, and the error each refusal becomes.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import {
  Cancelled,
  Client,
  DeadlineExceeded,
  InvalidArgument,
  JobFinished,
  JobIdConflict,
  JobNotDelayed,
  JobNotFound,
  JobNotRetryable,
  LimitExceeded,
  Raw,
  ScheduleNotFound,
  Unavailable,
  type Event,
} from "@jobbroker/client";

import { eventually, queueName, sharedAddress, stopShared } from "./broker.js";

let client: Client;

before(async () => {
  client = new Client({ address: await sharedAddress() });
});

after(async () => {
  client.close();
  await stopShared();
});

describe("jobs", () => {
  it("adds a job with Bull's options and reads it back", async () => {
    const queue = queueName();
    const added = await client.add(queue, "welcome", { to: "ada@example.com" }, {
      attempts: 3,
      backoff: { type: "exponential", delay: 5000 },
      priority: 7,
      removeOnComplete: 100,
      removeOnFail: { count: 5, age: 3600 },
      timeout: 60_000,
      lifespan: 3_600_000,
      group: "tenant-1",
      traceContext: { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", tracestate: "k=v" },
    });
    assert.equal(added.state, "waiting");
    assert.equal(added.duplicate, false);
    const job = await client.getJob(queue, added.jobId);
    assert.equal(job.id, added.jobId);
    assert.equal(job.queue, queue);
    assert.equal(job.name, "welcome");
    assert.equal(job.state, "waiting");
    assert.deepEqual(job.data, { to: "ada@example.com" });
    assert.equal(job.attemptsMade, 0);
    assert.equal(job.maxAttempts, 3);
    assert.ok(job.createdAt instanceof Date);
    const options = job.proto.options;
    assert.equal(options?.priority, 7);
    assert.equal(options?.backoff?.delayMs, 5000n);
    assert.equal(options?.removeOnComplete?.keepLast, 100);
    assert.equal(options?.removeOnFail?.keepAgeMs, 3_600_000n);
    assert.equal(options?.timeoutMs, 60_000n);
    assert.equal(options?.group, "tenant-1");
    assert.equal(options?.traceContext?.traceparent, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    assert.equal(options?.traceContext?.tracestate, "k=v");
  });

  it("adds a delayed job, promotes it, and refuses a second promote", async () => {
    const queue = queueName();
    const added = await client.add(queue, "later", {}, { delay: 60_000 });
    assert.equal(added.state, "delayed");
    assert.ok((await client.getJob(queue, added.jobId)).runAt instanceof Date);
    assert.equal(await client.promote(queue, added.jobId), "waiting");
    await assert.rejects(client.promote(queue, added.jobId), JobNotDelayed);
  });

  it("adds idempotently with a custom job id, and refuses a conflicting one", async () => {
    const queue = queueName();
    const first = await client.add(queue, "once", { n: 1 }, { jobId: "order-7" });
    const again = await client.add(queue, "once", { n: 1 }, { jobId: "order-7" });
    assert.equal(first.jobId, "order-7");
    assert.equal(again.duplicate, true);
    const error = await client.add(queue, "once", { n: 2 }, { jobId: "order-7" }).catch((e: unknown) => e);
    assert.ok(error instanceof JobIdConflict);
    assert.equal(error.reason, "JOB_ID_CONFLICT");
  });

  it("adds in bulk, atomically and in order", async () => {
    const queue = queueName();
    const added = await client.addBulk(queue, [
      { name: "a", data: 1 },
      { name: "b", data: 2, options: { priority: 1 } },
      { name: "c", data: new Raw(Buffer.from([1, 2, 3])) },
    ]);
    assert.deepEqual(
      added.map((a) => a.state),
      ["waiting", "waiting", "waiting"],
    );
    const raw = (await client.getJob(queue, added[2]?.jobId ?? "")).data;
    assert.ok(raw instanceof Raw);
    assert.deepEqual([...raw.body], [1, 2, 3]);
    const bad = await client
      .addBulk(queue, [{ name: "ok" }, { name: "bad", options: { priority: 2_000_000 } }])
      .catch((e: unknown) => e);
    assert.ok(bad instanceof InvalidArgument);
    assert.equal(bad.field, "jobs[1].options.priority");
    assert.equal((await client.queue(queue)).counts.waiting, 3, "nothing of the refused bulk was added");
  });

  it("cancels a waiting job, then refuses to cancel it again", async () => {
    const queue = queueName();
    const { jobId } = await client.add(queue, "x");
    assert.equal(await client.cancel(queue, jobId, "not needed"), "cancelled");
    const job = await client.getJob(queue, jobId);
    assert.equal(job.state, "cancelled");
    await assert.rejects(client.cancel(queue, jobId), JobFinished);
  });

  it("retries a cancelled job and refuses to retry a waiting one", async () => {
    const queue = queueName();
    const { jobId } = await client.add(queue, "x");
    await assert.rejects(client.retry(queue, jobId), JobNotRetryable);
    await client.cancel(queue, jobId);
    assert.equal(await client.retry(queue, jobId), "waiting");
  });

  it("lists jobs a page at a time and walks every page", async () => {
    const queue = queueName();
    await client.addBulk(queue, Array.from({ length: 5 }, (_, i) => ({ name: "n", data: i })));
    const page = await client.list(queue, "waiting", { pageSize: 2 });
    assert.equal(page.jobs.length, 2);
    assert.equal(page.total, 5);
    assert.notEqual(page.nextPageToken, "");
    const all = [];
    for await (const job of client.iterJobs(queue, "waiting", { pageSize: 2 })) all.push(job.data);
    assert.deepEqual(all, [0, 1, 2, 3, 4]);
    await assert.rejects(client.list(queue, "nope" as never), RangeError);
  });

  it("removes a job, then finds it no more", async () => {
    const queue = queueName();
    const { jobId } = await client.add(queue, "x");
    assert.equal(await client.remove(queue, jobId), "waiting");
    const error = await client.getJob(queue, jobId).catch((e: unknown) => e);
    assert.ok(error instanceof JobNotFound);
    assert.equal(error.code, 5);
    assert.equal(error.reason, "JOB_NOT_FOUND");
  });

  it("reads logs (none yet) and refuses a bad range with the field named", async () => {
    const queue = queueName();
    const { jobId } = await client.add(queue, "x");
    assert.deepEqual(await client.logs(queue, jobId), { lines: [], total: 0 });
    const error = await client.logs(queue, jobId, 0, 5000).catch((e: unknown) => e);
    assert.ok(error instanceof InvalidArgument);
    assert.equal(error.field, "limit");
  });

  it("names the limit a payload is over", async () => {
    const queue = queueName();
    const error = await client.add(queue, "big", "x".repeat(1_100_000)).catch((e: unknown) => e);
    assert.ok(error instanceof LimitExceeded, String(error));
    assert.equal(error.code, 8);
    assert.notEqual(error.limit, "");
  });

  it("streams a finished job's snapshot and ends", async () => {
    const queue = queueName();
    const { jobId } = await client.add(queue, "x");
    await client.cancel(queue, jobId);
    const items = [];
    for await (const item of client.streamProgress(queue, jobId)) items.push(item);
    assert.equal(items.length, 1);
    assert.equal(items[0]?.kind, "job");
  });

  it("streams the events of a job until the one that ends it", async () => {
    const queue = queueName();
    const { jobId } = await client.add(queue, "x");
    const seen: string[] = [];
    const stream = (async () => {
      for await (const item of client.streamProgress(queue, jobId)) {
        seen.push(item.kind === "job" ? `job:${item.job.state}` : `${item.event.type}${item.event.final ? " (final)" : ""}`);
        if (item.kind === "job") await client.cancel(queue, jobId);
      }
    })();
    await stream;
    // The broker marks the event that ends the stream (the wire's final flag).
    assert.deepEqual(seen, ["job:waiting", "cancelled (final)"]);
    await assert.rejects(client.wait(queue, jobId), (error: Error) => error.name === "JobCancelled");
  });

  it("checks job data against a schema set for its name, naming the field and the rule", async () => {
    const queue = queueName();
    const schema = { type: "object", required: ["userId"], properties: { userId: { type: "string" } } };
    assert.equal(await client.setJobSchema(queue, "send", schema), true);
    assert.equal(await client.setJobSchema(queue, "send", JSON.stringify(schema)), false);
    assert.deepEqual(await client.jobSchemas(queue), { send: schema });
    const bad = await client.add(queue, "send", { userId: 42 }).catch((e: unknown) => e);
    assert.ok(bad instanceof InvalidArgument, String(bad));
    assert.equal(bad.field, "data.userId");
    await client.add(queue, "send", { userId: "u1" });
    await client.add(queue, "other", { anything: true });
    assert.equal(await client.setJobSchema(queue, "send", null), true);
    await client.add(queue, "send", { userId: 42 });
    assert.deepEqual(await client.jobSchemas(queue), {});
  });

  it("gives up a wait at its deadline, and aborts on its signal", async () => {
    const queue = queueName();
    const { jobId } = await client.add(queue, "x");
    await assert.rejects(client.wait(queue, jobId, { timeout: 300 }), DeadlineExceeded);
    const controller = new AbortController();
    const waiting = client.wait(queue, jobId, { signal: controller.signal });
    setTimeout(() => controller.abort(), 100);
    await assert.rejects(waiting, Cancelled);
  });
});

describe("queues", () => {
  it("counts, pauses, resumes and lists queues", async () => {
    const queue = queueName();
    await client.add(queue, "x");
    await client.add(queue, "y", {}, { delay: 60_000 });
    await client.pause(queue);
    let info = await client.queue(queue);
    assert.equal(info.paused, true);
    assert.equal(info.counts.waiting, 1);
    assert.equal(info.counts.delayed, 1);
    await client.resume(queue);
    info = await client.queue(queue);
    assert.equal(info.paused, false);
    assert.ok((await client.queues()).some((q) => q.name === queue));
  });

  it("drains, promotes, retries, cleans and obliterates", async () => {
    const queue = queueName();
    await client.addBulk(queue, [{ name: "a" }, { name: "b" }]);
    await client.add(queue, "later", {}, { delay: 60_000 });
    assert.equal(await client.drain(queue), 2);
    assert.equal(await client.promoteDelayed(queue), 1);
    const { jobId } = await client.add(queue, "c");
    await client.cancel(queue, jobId);
    assert.deepEqual(await client.clean(queue, "cancelled"), [jobId]);
    assert.equal(await client.retryFailed(queue), 0);
    assert.equal(await client.obliterate(queue), 1);
    assert.equal((await client.queue(queue)).counts.waiting, 0);
  });

  it("updates settings as a whole and reads them back", async () => {
    const queue = queueName();
    const settings = await client.updateSettings(queue, {
      rateLimit: { max: 10, duration: 1000 },
      concurrency: 4,
      groupRateLimit: { max: 2, duration: 500 },
      maxStalled: 3,
    });
    assert.deepEqual(settings, {
      rateLimit: { max: 10, duration: 1000 },
      concurrency: 4,
      groupRateLimit: { max: 2, duration: 500 },
      maxStalled: 3,
    });
    assert.deepEqual((await client.queue(queue)).settings, settings);
    assert.deepEqual(await client.workers(queue), []);
  });

  it("upserts, lists, reads and removes schedules", async () => {
    const queue = queueName();
    const stored = await client.upsertSchedule(queue, { key: "digest", name: "send", data: { n: 1 }, cron: "0 8 * * *", timezone: "Europe/Paris" });
    assert.equal(stored.key, "digest");
    assert.ok(stored.nextRunAt instanceof Date);
    await client.upsertSchedule(queue, { key: "tick", name: "tick", every: 60_000 });
    assert.deepEqual((await client.schedules(queue)).map((s) => s.key).sort(), ["digest", "tick"]);
    assert.equal((await client.schedule(queue, "tick")).every, 60_000);
    await client.removeSchedule(queue, "tick");
    await assert.rejects(client.schedule(queue, "tick"), ScheduleNotFound);
    await assert.rejects(client.upsertSchedule(queue, { key: "x", name: "x" }), TypeError);
    const bad = await client.upsertSchedule(queue, { key: "x", name: "x", cron: "not cron" }).catch((e: unknown) => e);
    assert.ok(bad instanceof InvalidArgument);
    assert.equal(bad.field, "schedule.cron");
  });

  it("watches a queue's events from now on", async () => {
    const queue = queueName();
    const before = await client.add(queue, "before");
    const events: Event[] = [];
    const controller = new AbortController();
    const watching = (async () => {
      for await (const event of client.watchEvents(queue, { signal: controller.signal })) {
        events.push(event);
        if (event.type === "cancelled") return;
      }
    })();
    // The watch sees events from the moment it is open: add markers until it sees one.
    await eventually(async () => {
      await client.add(queue, "marker");
      return events.length > 0;
    });
    assert.ok(events.every((e) => e.jobId !== before.jobId), "no event from before the watch");
    await client.cancel(queue, before.jobId);
    await watching;
    assert.equal(events.at(-1)?.jobId, before.jobId);
  });

  it("replays a queue's events after a given one", async () => {
    const queue = queueName();
    const { jobId } = await client.add(queue, "x");
    await client.pause(queue);
    await client.cancel(queue, jobId);
    const events: Event[] = [];
    for await (const event of client.watchEvents(queue, { afterEventId: "0-0" })) {
      events.push(event);
      if (events.length === 3) break;
    }
    assert.deepEqual(
      events.map((e) => e.type),
      ["added", "paused", "cancelled"],
    );
    assert.equal(events[0]?.name, "x");
    const replay: Event[] = [];
    for await (const event of client.watchEvents(queue, { afterEventId: events[0]?.id ?? "" })) {
      replay.push(event);
      if (replay.length === 2) break;
    }
    assert.deepEqual(
      replay.map((e) => e.id),
      events.slice(1).map((e) => e.id),
    );
  });
});

describe("connection", () => {
  it("fails fast with Unavailable when no broker listens", async () => {
    const nobody = new Client({ address: "127.0.0.1:1", retries: 1, retryBackoff: 10 });
    try {
      await assert.rejects(nobody.getJob("q", "1"), Unavailable);
    } finally {
      nobody.close();
    }
  });

  it("spreads calls over several addresses and skips a dead one", async () => {
    const address = await sharedAddress();
    const both = new Client({ address: [address, "127.0.0.1:1"] });
    try {
      assert.equal(both.target, `ipv4:${address},127.0.0.1:1`);
      const queue = queueName();
      for (let i = 0; i < 5; i++) await both.add(queue, "x");
      assert.equal((await both.queue(queue)).counts.waiting, 5);
    } finally {
      both.close();
    }
  });

  it("refuses a closed client's calls", async () => {
    const closed = new Client({ address: await sharedAddress() });
    closed.close();
    await assert.rejects(closed.getJob("q", "1"), /closed/);
  });
});
