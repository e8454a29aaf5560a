// The npm pack tarballs install into a scratch project and work there: JavaScript against a
// real broker, and TypeScript (strict) against the shipped declarations.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";

import { scratch, sharedAddress, stopShared, writeFile } from "./broker.js";

const run = promisify(execFile);
const ROOT = join(__dirname, "..", "..");
const TSC = join(ROOT, "node_modules", "typescript", "bin", "tsc");

let dir: string;
let cleanup: () => void;

before(async () => {
  [dir, cleanup] = scratch("jobbroker-pack-");
  await run("npm", ["pack", "--silent", "-w", "packages/client", "-w", "packages/nestjs", "--pack-destination", dir], { cwd: ROOT });
  const tarballs = readdirSync(dir).filter((name) => name.endsWith(".tgz")).map((name) => join(dir, name));
  assert.equal(tarballs.length, 2, "one tarball per package");
  writeFile(dir, "package.json", JSON.stringify({ name: "scratch", private: true }));
  // --prefer-offline: the dependencies come from the cache `npm ci` filled.
  await run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error", ...tarballs, "@nestjs/common@11", "@nestjs/core@11", "reflect-metadata", "rxjs"], {
    cwd: dir,
    timeout: 240_000,
  });
});

after(async () => {
  cleanup();
  await stopShared();
});

describe("npm pack", () => {
  it("installs and runs a producer and a worker from the tarball", async () => {
    const script = writeFile(
      dir,
      "main.js",
      `
const { Client, Worker } = require("@jobbroker/client");
const { JobBrokerModule, Processor } = require("@jobbroker/nestjs");
(async () => {
  const address = process.argv[2];
  const queue = "pack-" + process.pid;
  const worker = new Worker(queue, { address, wait: 1000 }).process("hi", (job) => ({ hi: job.data.name }));
  await worker.start();
  const client = new Client({ address });
  const { jobId } = await client.add(queue, "hi", { name: "tarball" });
  const result = await client.wait(queue, jobId, { timeout: 30000 });
  await worker.close(0);
  client.close();
  console.log(JSON.stringify({ result, nest: typeof JobBrokerModule.forRoot, decorator: typeof Processor }));
})().catch((error) => { console.error(error); process.exit(1); });
`,
    );
    const { stdout } = await run(process.execPath, [script, await sharedAddress()], { cwd: dir, timeout: 60_000 });
    assert.deepEqual(JSON.parse(stdout), { result: { hi: "tarball" }, nest: "function", decorator: "function" });
  });

  it("type-checks a strict TypeScript program against the shipped declarations", async () => {
    writeFile(
      dir,
      "check.ts",
      `
import { Client, InvalidArgument, Worker, type Job, type WorkerJob } from "@jobbroker/client";
import { InjectQueue, Queue } from "@jobbroker/nestjs";
const client = new Client({ address: "127.0.0.1:1", tls: false });
const worker = new Worker("q").process("n", (job: WorkerJob<{ n: number }>) => job.data.n * 2);
async function use(queue: Queue): Promise<number> {
  const job: Job = await client.getJob("q", "1");
  const added = await queue.add("n", { n: 1 }, { attempts: 3, backoff: { type: "exponential", delay: 5000 } });
  const error: unknown = undefined;
  if (error instanceof InvalidArgument) return error.field.length;
  return job.attemptsMade + Number(added.id) + worker.concurrency + (InjectQueue("q") ? 1 : 0);
}
void use;
`,
    );
    writeFile(dir, "tsconfig.json", JSON.stringify({ compilerOptions: { strict: true, noEmit: true, module: "node16", moduleResolution: "node16", target: "ES2022", types: [], skipLibCheck: false, experimentalDecorators: true }, files: ["check.ts"] }));
    await run(process.execPath, [TSC, "-p", dir], { cwd: dir, timeout: 120_000 }).catch((error: Error & { stdout?: string }) => {
      throw new Error(`tsc failed:\n${error.stdout ?? error.message}`);
    });
  });
});
