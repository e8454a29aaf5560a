// The NestJS module in-process: @Processor/@Process with concurrency, @InjectQueue's add and
// getJob, and the @OnQueue... listeners fed by WatchEvents (stalled included).

import "reflect-metadata";

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { Injectable, Module, type INestApplicationContext } from "@nestjs/common";
import { NestFactory } from "@nestjs/core";
import { Client } from "@jobbroker/client";
import { WorkerService } from "@jobbroker/client/gen/jobbroker/v1/worker_service_pb";
import {
  InjectQueue,
  Job,
  JobBrokerModule,
  OnQueueActive,
  OnQueueCompleted,
  OnQueueDrained,
  OnQueueFailed,
  OnQueueProgress,
  OnQueueStalled,
  Process,
  Processor,
  Queue,
} from "@jobbroker/nestjs";

import { eventually, queueName, sharedAddress, stopShared } from "./broker.js";
import { baseMetadata, openChannel } from "../../packages/client/dist/channel.js";
import { ServiceClient } from "../../packages/client/dist/rpc.js";

const QUEUE = queueName("nest");
const seen: string[] = [];
let running = 0;
let most = 0;

@Processor(QUEUE)
class Tasks {
  @Process({ name: "work", concurrency: 2 })
  async work(job: Job<{ n: number }>) {
    running++;
    most = Math.max(most, running);
    await job.progress(50);
    await job.log(`working on ${job.data.n}`);
    // Long enough for the other jobs' adds to land while the first ones run.
    await new Promise((done) => setTimeout(done, 300));
    running--;
    return { doubled: job.data.n * 2 };
  }

  @Process("broken")
  broken(job: Job) {
    throw new RangeError(`attempt ${job.attemptsMade + 1} broke`);
  }

  @OnQueueActive()
  active(job: Job) {
    seen.push(`active:${job.id}`);
  }

  @OnQueueProgress()
  progress(job: Job, progress: unknown) {
    seen.push(`progress:${job.id}:${String(progress)}`);
  }

  @OnQueueCompleted()
  completed(job: Job, result: { doubled: number }) {
    seen.push(`completed:${job.id}:${result.doubled}`);
  }

  @OnQueueFailed()
  failed(job: Job, error: Error) {
    seen.push(`failed:${job.id}:${error.name}:${error.message}`);
  }

  @OnQueueDrained()
  drained() {
    seen.push("drained");
  }

}

const STALL_QUEUE = queueName("nest-stall");
const stalled: string[] = [];

@Processor(STALL_QUEUE)
class StallWatcher {
  @OnQueueStalled()
  stalled(job: Job) {
    stalled.push(job.id);
  }
}

@Injectable()
class Producer {
  constructor(@InjectQueue(QUEUE) readonly queue: Queue) {}
}

let context: INestApplicationContext;
let producer: Producer;

before(async () => {
  const address = await sharedAddress();
  @Module({ imports: [JobBrokerModule.forRoot({ address, worker: { wait: 1_000 } }), JobBrokerModule.registerQueue({ name: QUEUE })], providers: [Tasks, StallWatcher, Producer] })
  class AppModule {}
  context = await NestFactory.createApplicationContext(AppModule, { logger: ["error"] });
  await context.init();
  producer = context.get(Producer);
});

after(async () => {
  await context.close();
  await stopShared();
});

describe("JobBrokerModule", () => {
  it("runs @Process methods with their concurrency and feeds the @OnQueue listeners", async () => {
    const queue = producer.queue;
    const jobs = await Promise.all([1, 2, 3, 4, 5, 6].map((n) => queue.add("work", { n }, { attempts: 1 })));
    for (const job of jobs) assert.equal(await job.finished() !== undefined, true);
    // As in Bull, the class's concurrencies add up (2 + 1) and its jobs share them.
    assert.equal(most, 3);
    const first = jobs[0] as Job;
    assert.deepEqual(first.returnvalue, { doubled: 2 });
    await eventually(() => jobs.every((j) => seen.includes(`completed:${j.id}:${Number(j.data.n) * 2}`)), 20_000, "completed listeners");
    assert.ok(seen.includes(`active:${first.id}`));
    assert.ok(seen.includes(`progress:${first.id}:50`));
    // Bull's drained: the queue ran empty once its last waiting job was taken.
    await eventually(() => seen.includes("drained"), 20_000, "a drained event");
    const fetched = await queue.getJob(first.id);
    assert.equal(await fetched?.getState(), "completed");
    assert.equal(fetched?.progress(), 50);
    assert.equal(await queue.getJob("no-such-job"), null);
  });

  it("fails a throwing @Process method's attempt and tells @OnQueueFailed", async () => {
    const job = await producer.queue.add("broken", {}, { attempts: 2, backoff: 100 });
    await assert.rejects(job.finished(), (e: Error) => e.name === "JobFailed");
    await eventually(() => seen.filter((s) => s.startsWith(`failed:${job.id}:RangeError:`)).length === 2, 20_000, "two failed events");
    const fetched = await producer.queue.getJob(job.id);
    assert.equal(fetched?.failedReason, "attempt 2 broke");
    assert.equal(fetched?.attemptsMade, 2);
  });

  it("refuses Bull options jobbroker does not take in add, saying what to use", async () => {
    await assert.rejects(producer.queue.add("work", { n: 1 }, { repeat: { cron: "* * * * *" } } as never), /upsertSchedule/);
  });

  it("tells @OnQueueStalled when a job's lease runs out", async () => {
    const address = await sharedAddress();
    const client = new Client({ address });
    const channel = openChannel({ address });
    const service = new ServiceClient(channel, WorkerService, baseMetadata(undefined));
    try {
      // Nobody processes STALL_QUEUE: lease its job by hand and never renew the lease.
      const { jobId } = await client.add(STALL_QUEUE, "x", {}, { attempts: 2 });
      const leased = await service.unary("lease", { queue: STALL_QUEUE, workerId: "test:1:stall", maxJobs: 1, waitMs: 5_000, leaseMs: 1_000 });
      assert.equal(leased.jobs[0]?.jobId, jobId);
      await eventually(() => stalled.includes(jobId), 20_000, "the stalled listener");
    } finally {
      channel.close();
      client.close();
    }
  });
});
