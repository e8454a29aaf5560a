// Node and Python on one broker: a job added from Node is processed by a Python Worker, one
// added from Python by a Node Worker, and each result is read on the other side.

import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";

import { Client, Worker } from "@jobbroker/client";

import { queueName, scratch, sharedAddress, stopShared, VENV_BIN, writeFile } from "./broker.js";

const PYTHON = join(VENV_BIN, "python");

const PYTHON_WORKER = `
import sys
from jobbroker import Worker

worker = Worker(sys.argv[2], address=sys.argv[1], wait=1)


@worker.handler("greet")
async def greet(ctx):
    ctx.log("greeting from python")
    ctx.progress(50)
    return {"hello": ctx.data["name"], "by": "python", "attempt": ctx.attempt}


print("ready", flush=True)
worker.run()
`;

const PYTHON_PRODUCER = `
import json
import sys
from jobbroker import Client

with Client(sys.argv[1]) as client:
    added = client.add(sys.argv[2], "greet", {"name": "py"}, attempts=2)
    print(json.dumps({"id": added.job_id, "result": client.wait(sys.argv[2], added.job_id, timeout=60)}))
`;

let dir: string;
let cleanup: () => void;
let address: string;
let client: Client;

before(async () => {
  [dir, cleanup] = scratch();
  address = await sharedAddress();
  client = new Client({ address });
});

after(async () => {
  client.close();
  cleanup();
  await stopShared();
});

describe("interop", () => {
  it("a job added from Node is processed by a Python worker", async () => {
    const queue = queueName("interop");
    const script = writeFile(dir, "worker.py", PYTHON_WORKER);
    const child = spawn(PYTHON, [script, address, queue], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    try {
      const { jobId } = await client.add(queue, "greet", { name: "node" }, { attempts: 2 });
      const result = await client.wait(queue, jobId, { timeout: 60_000 }).catch((error: unknown) => {
        throw new Error(`${String(error)}\npython worker stderr:\n${stderr}`);
      });
      assert.deepEqual(result, { hello: "node", by: "python", attempt: 1 });
      assert.deepEqual((await client.logs(queue, jobId)).lines, ["greeting from python"]);
      assert.equal((await client.getJob(queue, jobId)).progress.percent, 50);
    } finally {
      const exited = new Promise((done) => child.once("exit", done));
      child.kill("SIGTERM");
      await exited;
    }
  });

  it("a job added from Python is processed by a Node worker", async () => {
    const queue = queueName("interop");
    const worker = new Worker(queue, { address, wait: 1_000 });
    worker.process("greet", (job: { data: { name: string }; attempt: number; log(line: string): void }) => {
      job.log("greeting from node");
      return { hello: job.data.name, by: "node", attempt: job.attempt };
    });
    await worker.start();
    try {
      const script = writeFile(dir, "producer.py", PYTHON_PRODUCER);
      const { stdout } = await promisify(execFile)(PYTHON, [script, address, queue], { timeout: 90_000 });
      const answer = JSON.parse(stdout) as { id: string; result: unknown };
      assert.deepEqual(answer.result, { hello: "py", by: "node", attempt: 1 });
      assert.deepEqual((await client.logs(queue, answer.id)).lines, ["greeting from node"]);
    } finally {
      await worker.close(0);
    }
  });
});
