// BullMQ as the benchmark suite drives it: the same command line and answers as the Python
// peers (bench/peers/protocol.py).
//
//   node bench/peers/bullmq/bench.js enqueue --queue Q --mode seq|inflight|bulk|paced|fill ...
//   node bench/peers/bullmq/bench.js work --queue Q --count N --limit S [--record]
//
// Timestamps are process.hrtime (CLOCK_MONOTONIC, the clock Python's time.monotonic reads),
// in seconds. The worker runs at concurrency 100; "done" counts its `completed` events. The
// work answer carries the same timing points and CPU seconds as bench/common.py's Recorder:
// loaded (the library required, the worker about to be made), first_at, finished_at, and
// process.cpuUsage() (user + system, the whole process since its start) at loaded and at the
// last job. --remove-on-complete adds jobs with removeOnComplete: true.
'use strict';

const fs = require('fs');
const { Queue, Worker } = require('bullmq');
const IORedis = require('ioredis');

const now = () => Number(process.hrtime.bigint()) / 1e9;
const cpuSeconds = () => {
  const used = process.cpuUsage();
  return (used.user + used.system) / 1e6;
};

function parse(argv) {
  const args = {
    command: argv[0],
    queue: '',
    redisUrl: 'redis://127.0.0.1:6379/0',
    mode: 'seq',
    duration: 3,
    inFlight: 100,
    batch: 1000,
    rate: 200,
    count: 1000,
    limit: 30,
    record: false,
    concurrency: 100,
    removeOnComplete: false,
    payloadBytes: 0,
  };
  const names = {
    '--queue': 'queue',
    '--redis-url': 'redisUrl',
    '--mode': 'mode',
    '--duration': 'duration',
    '--in-flight': 'inFlight',
    '--batch': 'batch',
    '--rate': 'rate',
    '--count': 'count',
    '--limit': 'limit',
    '--concurrency': 'concurrency',
    '--payload-bytes': 'payloadBytes',
  };
  for (let i = 1; i < argv.length; i++) {
    if (argv[i] === '--record') {
      args.record = true;
    } else if (argv[i] === '--remove-on-complete') {
      args.removeOnComplete = true;
    } else if (argv[i] in names) {
      const key = names[argv[i]];
      const value = argv[++i];
      args[key] = typeof args[key] === 'number' ? Number(value) : value;
    } else {
      throw new Error(`unknown argument ${argv[i]}`);
    }
  }
  if (!['enqueue', 'work'].includes(args.command) || !args.queue) {
    throw new Error('usage: bench.js enqueue|work --queue Q ...');
  }
  return args;
}

// The answer goes to the file the runner names in JBBENCH_RESULT_FILE (else to stdout, once
// written: stdout to a pipe is asynchronous in Node, and process.exit() would cut it short).
function emit(result) {
  const path = process.env.JBBENCH_RESULT_FILE;
  if (path) {
    fs.writeFileSync(path + '.tmp', JSON.stringify(result));
    fs.renameSync(path + '.tmp', path);
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    process.stdout.write('RESULT ' + JSON.stringify(result) + '\n', resolve);
  });
}

function connect(url) {
  // BullMQ's workers need maxRetriesPerRequest: null.
  return new IORedis(url, { maxRetriesPerRequest: null });
}

const jobData = (i, pad) => (pad ? { i, t: now(), p: pad } : { i, t: now() });
const sleep = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));

async function enqueue(args) {
  const connection = connect(args.redisUrl);
  const defaultJobOptions = args.removeOnComplete ? { removeOnComplete: true } : {};
  const queue = new Queue(args.queue, { connection, defaultJobOptions });
  await queue.waitUntilReady();
  try {
    if (args.mode === 'fill') {
      // Exactly args.count jobs, in bulk; at most about 2 MB a call (as protocol.py's fill).
      const pad = 'x'.repeat(args.payloadBytes);
      const batch = Math.max(1, Math.min(args.batch, Math.floor(2000000 / (args.payloadBytes + 200))));
      const start = now();
      for (let first = 0; first < args.count; first += batch) {
        const jobs = [];
        for (let i = first; i < Math.min(args.count, first + batch); i++) {
          jobs.push({ name: 'noop', data: jobData(i, pad) });
        }
        await queue.addBulk(jobs);
      }
      return { count: args.count, seconds: now() - start };
    }
    if (args.mode === 'paced') {
      // Due at i / rate; waits while inFlight adds are unanswered; failures are counted.
      const sent = [];
      const pending = new Set();
      let failed = 0;
      const start = now();
      for (let i = 0; i < args.count; i++) {
        const delay = start + i / args.rate - now();
        if (delay > 0) await sleep(delay);
        while (pending.size >= args.inFlight) await Promise.race(pending);
        const data = jobData(i);
        const add = queue
          .add('noop', data)
          .then(() => sent.push([i, data.t, now()]))
          .catch(() => (failed += 1))
          .finally(() => pending.delete(add));
        pending.add(add);
      }
      await Promise.all(pending);
      return { count: args.count, seconds: now() - start, sent, failed };
    }
    let next = 0;
    // One call before the clock starts: connections made, scripts loaded.
    if (args.mode === 'bulk') {
      const jobs = [];
      for (let k = 0; k < args.batch; k++) jobs.push({ name: 'noop', data: jobData(next++) });
      await queue.addBulk(jobs);
    } else {
      await queue.add('noop', jobData(next++));
    }
    const warmup = next;
    const deadline = now() + args.duration;
    const lane = async () => {
      let added = 0;
      while (now() < deadline) {
        if (args.mode === 'bulk') {
          const jobs = [];
          for (let k = 0; k < args.batch; k++) jobs.push({ name: 'noop', data: jobData(next++) });
          await queue.addBulk(jobs);
          added += args.batch;
        } else {
          await queue.add('noop', jobData(next++));
          added += 1;
        }
      }
      return added;
    };
    const lanes = args.mode === 'inflight' ? args.inFlight : 1;
    const start = now();
    const counts = await Promise.all(Array.from({ length: lanes }, lane));
    return { count: counts.reduce((a, b) => a + b, 0), seconds: now() - start, warmup };
  } finally {
    await queue.close();
    connection.disconnect();
  }
}

async function work(args) {
  const loaded = now();
  const cpuLoaded = cpuSeconds();
  const connection = connect(args.redisUrl);
  let done = 0;
  let firstAt = 0;
  let finishedAt = 0;
  let finishedJobs = 0;
  let cpuFinished = 0;
  const starts = [];
  let reached;
  const allDone = new Promise((resolve) => (reached = resolve));
  const started = now();
  const worker = new Worker(
    args.queue,
    async (job) => {
      const at = now();
      if (!firstAt) firstAt = at;
      if (args.record) starts.push([job.data.i, at]);
    },
    { connection, concurrency: args.concurrency },
  );
  worker.on('completed', () => {
    done += 1;
    if (done === args.count) {
      finishedAt = now();
      finishedJobs = done;
      cpuFinished = cpuSeconds();
      reached();
    }
  });
  await worker.waitUntilReady();
  process.stdout.write(`READY ${now()}\n`);
  await Promise.race([allDone, sleep(args.limit)]);
  if (!finishedAt) {
    finishedAt = now();
    finishedJobs = done;
    cpuFinished = cpuSeconds();
  }
  await worker.close(true);
  connection.disconnect();
  return {
    done,
    seconds: finishedAt - started,
    starts,
    loaded,
    first_at: firstAt,
    finished_at: finishedAt,
    finished_jobs: finishedJobs,
    cpu_loaded: cpuLoaded,
    cpu_finished: cpuFinished,
  };
}

async function main() {
  const args = parse(process.argv.slice(2));
  const result = args.command === 'work' ? await work(args) : await enqueue(args);
  await emit(result);
  process.exit(0);
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
