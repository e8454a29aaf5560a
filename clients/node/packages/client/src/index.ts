// @jobbroker/client: the jobbroker client and worker SDK for Node.js.

export { Client } from "./client.js";
export type { BulkJob, CallOptions, ClientOptions, ListOptions, Logs, Page, ProgressItem } from "./client.js";
export type { ConnectionOptions, TlsOptions } from "./channel.js";
export { DEFAULT_ADDRESS, target } from "./channel.js";
export * from "./errors.js";
export { setLogger } from "./log.js";
export type { Logger } from "./log.js";
export { Raw, isTerminal } from "./models.js";
export type {
  Added,
  BackoffOptions,
  Event,
  EventType,
  Failure,
  Job,
  JobOptions,
  JobState,
  KeepJobs,
  Progress,
  TraceContextCarrier,
} from "./models.js";
export type { JobCounts, QueueInfo, QueueSettings, RateLimit, Schedule, ScheduleSpec, WorkerInfo } from "./queues.js";
export { Worker, defaultWorkerId } from "./worker/worker.js";
export type { Processor, WorkerOptions } from "./worker/worker.js";
export { DoNotRetry, JobStopped, UnrecoverableError, WorkerJob } from "./worker/job.js";
export type { StopReason } from "./worker/job.js";
