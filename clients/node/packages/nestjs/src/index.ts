// @jobbroker/nestjs: @nestjs/bull's module, decorators, Queue and Job on a jobbroker broker.

export {
  getQueueToken,
  InjectQueue,
  OnQueueActive,
  OnQueueCompleted,
  OnQueueError,
  OnQueueEvent,
  OnQueueFailed,
  OnQueuePaused,
  OnQueueProgress,
  OnQueueRemoved,
  OnQueueDrained,
  OnQueueResumed,
  OnQueueStalled,
  OnQueueWaiting,
  Process,
  Processor,
} from "./decorators.js";
export type { ProcessOptions, ProcessorOptions, QueueEventName } from "./decorators.js";
export { Job } from "./job.js";
export type { JobOpts, JobProgress } from "./job.js";
export { JobBrokerModule } from "./module.js";
export { Queue, DEFAULT_JOB_NAME } from "./queue.js";
export type { JobCounts, QueueOptions } from "./queue.js";
export { JOBBROKER_CLIENT, JOBBROKER_OPTIONS } from "./tokens.js";
export type { JobBrokerModuleOptions } from "./tokens.js";
