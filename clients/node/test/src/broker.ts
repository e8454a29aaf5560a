// A real broker for the tests, started from the Python package (`jobbroker serve`) as a child
// process: on the Redis at 127.0.0.1:6379 when one answers, else on its embedded Redis.

import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { randomUUID } from "node:crypto";

/** The repository's root (clients/node/test/dist -> ../../../..). */
export const REPO = resolve(__dirname, "..", "..", "..", "..");
export const VENV_BIN = process.env.JOBBROKER_VENV_BIN ?? join(REPO, ".venv", "bin");
const LISTENING = /jobbroker listening on (\S+):(\d+)/;
const START_TIMEOUT_MS = 60_000;

/** A queue name of its own for each test. */
export function queueName(prefix = "node"): string {
  return `${prefix}-${randomUUID().slice(0, 12)}`;
}

let redisAnswers: Promise<boolean> | undefined;

/** Whether the Redis at 127.0.0.1:6379 answers PING. */
export function localRedis(): Promise<boolean> {
  redisAnswers ??= new Promise((done) => {
    const socket = connect({ host: "127.0.0.1", port: 6379 });
    const finish = (ok: boolean): void => {
      socket.destroy();
      done(ok);
    };
    socket.setTimeout(1_000, () => finish(false));
    socket.on("error", () => finish(false));
    socket.on("connect", () => socket.write("PING\r\n"));
    socket.on("data", (data) => finish(data.toString().startsWith("+PONG")));
  });
  return redisAnswers;
}

export interface BrokerOptions {
  /** Extra `jobbroker serve` arguments. */
  args?: string[];
  /** The port (0: a free one). */
  port?: number;
  /** The embedded Redis' data directory, to keep jobs across a restart without a local Redis. */
  dataDir?: string;
  /** Use an embedded Redis of its own even when a local one answers (for fixed queue names). */
  embedded?: boolean;
}

/** A running broker process. */
export class Broker {
  private constructor(
    readonly child: ChildProcess,
    readonly host: string,
    readonly port: number,
    readonly options: BrokerOptions,
    private readonly output: string[],
  ) {}

  get address(): string {
    return `${this.host}:${this.port}`;
  }

  static async start(options: BrokerOptions = {}): Promise<Broker> {
    const args = ["serve", "--port", String(options.port ?? 0), "--shutdown-grace", "1"];
    if (!options.embedded && (await localRedis())) {
      args.push("--redis-url", "redis://127.0.0.1:6379/0");
    } else {
      // The embedded Redis keeps its data here: a restart (same options) finds the jobs again.
      options = { ...options, dataDir: options.dataDir ?? mkdtempSync(join(tmpdir(), "jobbroker-data-")) };
      args.push("--data-dir", options.dataDir as string);
    }
    args.push(...(options.args ?? []));
    const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("JOBBROKER_")));
    const child = spawn(join(VENV_BIN, "jobbroker"), args, {
      env: { ...env, PYTHONUNBUFFERED: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const output: string[] = [];
    child.stderr?.on("data", (chunk: Buffer) => output.push(chunk.toString()));
    const match = await new Promise<RegExpMatchArray>((done, fail) => {
      let seen = "";
      const timer = setTimeout(() => fail(new Error(`broker did not start in time:\n${seen}\n${output.join("")}`)), START_TIMEOUT_MS);
      child.stdout?.on("data", (chunk: Buffer) => {
        seen += chunk.toString();
        const found = LISTENING.exec(seen);
        if (found) {
          clearTimeout(timer);
          done(found);
        }
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        fail(new Error(`broker exited (${code}) before listening:\n${seen}\n${output.join("")}`));
      });
    });
    child.stdout?.resume();
    return new Broker(child, match[1] as string, Number(match[2]), options, output);
  }

  /** Stop it (SIGTERM, then SIGKILL after 20 s) and wait for the exit. */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((done) => this.child.once("exit", done));
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 20_000);
    await exited;
    clearTimeout(timer);
  }

  /** Stop it and start a new broker on the same port and data. */
  async restart(downMs = 0): Promise<Broker> {
    await this.stop();
    if (downMs) await new Promise((done) => setTimeout(done, downMs));
    return Broker.start({ ...this.options, port: this.port });
  }

  logs(): string {
    return this.output.join("");
  }
}

let shared: Promise<Broker> | undefined;

/**
 * The broker most tests share: the one scripts/test.mjs started (JOBBROKER_TEST_ADDRESS), or
 * one started for this test file alone.
 */
export async function sharedAddress(): Promise<string> {
  const given = process.env.JOBBROKER_TEST_ADDRESS;
  if (given) return given;
  shared ??= Broker.start();
  return (await shared).address;
}

/** Stop the broker this file started for itself, if any (call in `after`). */
export async function stopShared(): Promise<void> {
  if (shared) await (await shared).stop();
  shared = undefined;
}

/** A scratch directory, removed by the returned function. */
export function scratch(prefix = "jobbroker-node-"): [string, () => void] {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return [dir, () => rmSync(dir, { recursive: true, force: true })];
}

/** Write a file and return its path. */
export function writeFile(dir: string, name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** Poll `check` until it returns a truthy value or `timeoutMs` passes. */
export async function eventually<T>(check: () => Promise<T> | T, timeoutMs = 20_000, what = "condition"): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`${what} not met within ${timeoutMs} ms${last instanceof Error ? `: ${last.message}` : ""}`);
    await new Promise((done) => setTimeout(done, 25));
  }
}
