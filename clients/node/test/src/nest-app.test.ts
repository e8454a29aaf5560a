// The example NestJS app (examples/nest-app: the guide's AiService, AiTaskProcessor, endpoints
// and event listeners with only their imports changed), started and exercised over HTTP. Its
// queue is the guide's `ai-tasks`, so its broker runs on an embedded Redis of its own.

import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { Client } from "@jobbroker/client";

import { Broker, eventually } from "./broker.js";

const APP = join(__dirname, "..", "..", "examples", "nest-app", "dist", "main.js");

let broker: Broker;
let app: ChildProcess;
let url: string;
let stdout = "";
let stderr = "";
let client: Client;

async function http(method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  const response = await fetch(`${url}${path}`, {
    method,
    headers: { "content-type": "application/json", "x-user-id": "user-7" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, json: await response.json() };
}

async function queueTask(conversationId: string): Promise<string> {
  const { status, json } = await http("POST", "/ai/queue", { conversationId, message: "Hello" });
  assert.equal(status, 201);
  assert.equal(json.status, "queued");
  return json.jobId as string;
}

async function statusOf(jobId: string, wanted: (json: any) => boolean): Promise<any> {
  return eventually(async () => {
    const { json } = await http("GET", `/ai/jobs/${jobId}`);
    return wanted(json) ? json : undefined;
  }, 30_000, `job ${jobId} to reach the wanted state`);
}

before(async () => {
  broker = await Broker.start({ embedded: true });
  client = new Client({ address: broker.address });
  app = spawn(process.execPath, [APP], {
    env: { ...process.env, JOBBROKER_ADDRESS: broker.address, PORT: "0", NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  app.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  url = await new Promise((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`the app did not start:\n${stdout}\n${stderr}`)), 60_000);
    app.stdout?.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      const found = /nest app listening on (\S+)/.exec(stdout);
      if (found) {
        clearTimeout(timer);
        done((found[1] as string).replace("[::1]", "127.0.0.1"));
      }
    });
    app.once("exit", (code) => fail(new Error(`the app exited (${code}):\n${stdout}\n${stderr}`)));
  });
});

after(async () => {
  if (app.exitCode === null) app.kill("SIGKILL");
  client.close();
  await broker.stop();
});

describe("the guide's NestJS app", () => {
  it("queues a completion, processes it, and reports its status and events", async () => {
    const jobId = await queueTask("c-1");
    const done = await statusOf(jobId, (s) => s.state === "completed");
    assert.deepEqual(done, {
      id: jobId,
      state: "completed",
      progress: 100,
      result: { conversationId: "c-1", content: "Read 1 message(s), 5 words.", tokens: 5 },
      attempts: 1,
    });
    await eventually(() => stdout.includes(`Job ${jobId} completed:`), 20_000, "the completed listener");
    await eventually(() => stdout.includes(`Job ${jobId} progress: 100%`), 20_000, "the progress listener");
    const job = await client.getJob("ai-tasks", jobId);
    assert.deepEqual(job.data, { userId: "user-7", conversationId: "c-1", message: "Hello", model: "gpt-4", maxTokens: 4096, temperature: 0.7 });
    assert.equal(job.maxAttempts, 3);
    assert.equal(job.proto.options?.backoff?.delayMs, 5000n);
    assert.equal(job.proto.options?.removeOnFail?.keepLast, 500);
  });

  it("retries a failed attempt under the job's options, and tells the failed listener", async () => {
    const jobId = await queueTask("fail-1");
    const failed = await statusOf(jobId, (s) => s.failedReason !== undefined);
    assert.equal(failed.failedReason, "the model is unavailable");
    assert.equal(failed.state, "delayed", "retried after the exponential backoff");
    assert.equal(failed.attempts, 1);
    await eventually(() => stderr.includes(`Job ${jobId} failed: the model is unavailable`), 20_000, "the failed listener");
    await client.cancel("ai-tasks", jobId);
  });

  it("cancels an active job through the cancel endpoint", async () => {
    const jobId = await queueTask("slow-1");
    await statusOf(jobId, (s) => s.state === "active");
    const { status, json } = await http("DELETE", `/ai/jobs/${jobId}`);
    assert.equal(status, 200);
    assert.deepEqual(json, { message: "Job cancelled" });
    await statusOf(jobId, (s) => s.state === "cancelled");
  });

  it("removes a waiting job through the cancel endpoint; unknown jobs are 404", async () => {
    await client.pause("ai-tasks");
    try {
      const jobId = await queueTask("c-2");
      assert.equal((await http("DELETE", `/ai/jobs/${jobId}`)).status, 200);
      assert.equal((await http("GET", `/ai/jobs/${jobId}`)).status, 404);
    } finally {
      await client.resume("ai-tasks");
    }
    assert.equal((await http("GET", "/ai/jobs/nope")).status, 404);
    assert.equal((await http("DELETE", "/ai/jobs/nope")).status, 404);
  });

  it("shuts down gracefully on SIGTERM", async () => {
    const exited = new Promise<string>((done) => app.once("exit", (code, signal) => done(String(code ?? signal))));
    app.kill("SIGTERM");
    // Nest closes the app, then raises the signal again to end the process.
    assert.match(await exited, /^(0|SIGTERM)$/);
    assert.match(stdout + stderr, /worker \S+ stopped/);
  });
});
