// The Bearer token and TLS (and mutual TLS) against a broker that requires them.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { Client, PermissionDenied, Unauthenticated, Unavailable, Worker } from "@jobbroker/client";

import { Broker, queueName, scratch, VENV_BIN, writeFile } from "./broker.js";

let dir: string;
let cleanup: () => void;

function openssl(...args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: "ignore" });
}

/** A CA, a server certificate for 127.0.0.1/localhost and a client certificate, signed by it. */
function makeCertificates(): void {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl("req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=jobbroker test CA");
  for (const [name, ext] of [
    ["server", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
    ["client", "extendedKeyUsage=clientAuth"],
  ] as const) {
    openssl("req", ...ec, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name}`);
    writeFile(dir, `${name}.ext`, `${ext}\n`);
    openssl("x509", "-req", "-in", `${name}.csr`, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", `${name}.crt`, "-days", "2", "-extfile", `${name}.ext`);
  }
}

function token(name: string, ...grants: string[]): string {
  const args = ["token", "create", name, "-f", join(dir, "tokens.toml")];
  for (const grant of grants) args.push("-g", grant);
  return execFileSync(join(VENV_BIN, "jobbroker"), args, { encoding: "utf8" }).trim().split("\n")[0] ?? "";
}

before(() => {
  [dir, cleanup] = scratch();
  makeCertificates();
});

after(() => cleanup());

describe("tokens", () => {
  let broker: Broker;
  let producer: string;
  let workerToken: string;

  before(async () => {
    producer = token("producer", "producer:auth-*");
    workerToken = token("worker", "worker:auth-*");
    broker = await Broker.start({ args: ["--auth-tokens-file", join(dir, "tokens.toml")] });
  });

  after(async () => broker.stop());

  it("sends the token with every call; a missing or unknown one is refused", async () => {
    const queue = queueName("auth");
    const client = new Client({ address: broker.address, token: producer });
    const anonymous = new Client({ address: broker.address });
    const stranger = new Client({ address: broker.address, token: "jbt_00000000_nope" });
    try {
      const { jobId } = await client.add(queue, "x");
      assert.equal((await client.getJob(queue, jobId)).state, "waiting");
      const missing = await anonymous.getJob(queue, jobId).catch((e: unknown) => e);
      assert.ok(missing instanceof Unauthenticated);
      assert.equal(missing.reason, "TOKEN_MISSING");
      const unknown = await stranger.getJob(queue, jobId).catch((e: unknown) => e);
      assert.ok(unknown instanceof Unauthenticated);
      assert.match(unknown.reason, /^TOKEN_(UNKNOWN|MALFORMED)$/);
    } finally {
      for (const c of [client, anonymous, stranger]) c.close();
    }
  });

  it("names the permission a token lacks", async () => {
    const client = new Client({ address: broker.address, token: producer });
    try {
      const denied = await client.add("elsewhere", "x").catch((e: unknown) => e);
      assert.ok(denied instanceof PermissionDenied);
      assert.equal(denied.reason, "PERMISSION_DENIED");
      assert.equal(denied.metadata.queue, "elsewhere");
      await assert.rejects(client.pause(queueName("auth")), PermissionDenied);
    } finally {
      client.close();
    }
  });

  it("runs a worker with its token, and refuses a worker without one", async () => {
    const queue = queueName("auth");
    const client = new Client({ address: broker.address, token: producer });
    const worker = new Worker(queue, { address: broker.address, token: workerToken, wait: 1_000 });
    worker.process(() => "with a token");
    const refused = new Worker(queue, { address: broker.address, wait: 1_000 });
    refused.process(() => "never");
    try {
      await worker.start();
      const { jobId } = await client.add(queue, "x");
      assert.equal(await client.wait(queue, jobId, { timeout: 20_000 }), "with a token");
      await assert.rejects(refused.start(), Unauthenticated);
    } finally {
      await worker.close(0);
      await refused.close(0);
      client.close();
    }
  });
});

describe("TLS", () => {
  let broker: Broker;

  before(async () => {
    broker = await Broker.start({
      args: ["--tls-cert-file", join(dir, "server.crt"), "--tls-key-file", join(dir, "server.key"), "--tls-client-ca-file", join(dir, "ca.crt")],
    });
  });

  after(async () => broker.stop());

  it("talks mutual TLS with the CA and a client certificate (paths or PEM contents)", async () => {
    const queue = queueName("tls");
    const client = new Client({
      address: broker.address,
      tls: { ca: join(dir, "ca.crt"), cert: join(dir, "client.crt"), key: join(dir, "client.key") },
    });
    const worker = new Worker(queue, {
      address: broker.address,
      wait: 1_000,
      tls: { ca: join(dir, "ca.crt"), cert: join(dir, "client.crt"), key: join(dir, "client.key") },
    });
    worker.process(() => "over TLS");
    try {
      await worker.start();
      const { jobId } = await client.add(queue, "x");
      assert.equal(await client.wait(queue, jobId, { timeout: 20_000 }), "over TLS");
    } finally {
      await worker.close(0);
      client.close();
    }
  });

  it("fails without a client certificate, or without trusting the broker's CA", async () => {
    const noCert = new Client({ address: broker.address, tls: { ca: join(dir, "ca.crt") }, retries: 0, timeout: 5_000 });
    const noCa = new Client({ address: broker.address, tls: true, retries: 0, timeout: 5_000 });
    const plaintext = new Client({ address: broker.address, retries: 0, timeout: 5_000 });
    try {
      for (const client of [noCert, noCa, plaintext]) await assert.rejects(client.queues(), Unavailable);
    } finally {
      for (const c of [noCert, noCa, plaintext]) c.close();
    }
    await assert.rejects(new Client({ tls: { cert: join(dir, "client.crt") } }).queues(), /both a client certificate and its key/);
  });
});
