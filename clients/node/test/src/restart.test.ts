// Streams and the worker across a broker restart (same port, same Redis): streamProgress and
// watchEvents resume after the last event they delivered, and the worker reconnects.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { Client, Worker, type Event, type ProgressItem } from "@jobbroker/client";

import { Broker, eventually, queueName } from "./broker.js";

let broker: Broker;
let client: Client;

/** Client settings that ride out a restart (a few seconds on a busy machine). */
const PATIENT = { retries: 60, retryBackoff: 50, retryBackoffMax: 500 };

before(async () => {
  broker = await Broker.start();
  client = new Client({ address: broker.address, ...PATIENT });
});

after(async () => {
  client.close();
  await broker.stop();
});

function describeItem(item: ProgressItem): string {
  return item.kind === "job" ? `job:${item.job.state}` : `${item.event.type}:${item.event.id}`;
}

describe("across a broker restart", () => {
  it("streamProgress resumes after the last event, without gap or repeat", async () => {
    const queue = queueName();
    const { jobId } = await client.add(queue, "x", {}, { delay: 600_000 });
    const items: string[] = [];
    let promoted = false;
    const following = (async () => {
      for await (const item of client.streamProgress(queue, jobId)) {
        items.push(describeItem(item));
        if (item.kind === "event" && item.event.type === "waiting") promoted = true;
      }
    })();
    await eventually(() => items.length === 1, 20_000, "the snapshot");
    await client.promote(queue, jobId);
    await eventually(() => promoted, 20_000, "the waiting event");
    broker = await broker.restart();
    // Right after the restart, before the stream is back: it must still get this event.
    await client.cancel(queue, jobId);
    await following;
    assert.equal(items.length, 3, items.join(" "));
    assert.equal(items[0], "job:delayed");
    assert.match(items[1] ?? "", /^waiting:/);
    assert.match(items[2] ?? "", /^cancelled:/);
  });

  it("watchEvents resumes after the last event it delivered", async () => {
    const queue = queueName();
    const events: Event[] = [];
    const watching = (async () => {
      for await (const event of client.watchEvents(queue, { afterEventId: "0-0" })) {
        events.push(event);
        if (event.type === "resumed") return;
      }
    })();
    await client.pause(queue);
    await eventually(() => events.length === 1, 20_000, "the paused event");
    broker = await broker.restart();
    // Only an add with a job id is retried while the client reconnects (an idempotent add).
    await client.add(queue, "x", {}, { jobId: "after-restart" });
    await client.resume(queue);
    await watching;
    assert.deepEqual(
      events.map((e) => e.type),
      ["paused", "added", "resumed"],
    );
    assert.equal(new Set(events.map((e) => e.id)).size, 3);
  });

  it("the worker reconnects, finishes the job it ran, and takes new ones", async () => {
    const queue = queueName();
    const worker = new Worker(queue, { address: broker.address, wait: 1_000, lease: 5_000 });
    let release: (() => void) | undefined;
    const gate = new Promise<void>((done) => (release = done));
    worker.process("gated", async (job) => {
      job.progress(50);
      await gate;
      return "after the restart";
    });
    worker.process("plain", () => "plain");
    await worker.start();
    try {
      const gated = await client.add(queue, "gated");
      await eventually(async () => (await client.getJob(queue, gated.jobId)).progress.percent === 50, 20_000, "the job running");
      broker = await broker.restart();
      release?.();
      assert.equal(await client.wait(queue, gated.jobId, { timeout: 30_000 }), "after the restart");
      const plain = await client.add(queue, "plain", {}, { jobId: "after-restart" });
      assert.equal(await client.wait(queue, plain.jobId, { timeout: 30_000 }), "plain");
    } finally {
      await worker.close(0);
    }
  });
});
