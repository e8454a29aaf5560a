// @nestjs/bull's decorators, for jobbroker: the same names and arguments, so a Bull app
// changes only its import lines.

import { Inject, SetMetadata } from "@nestjs/common";

/** The injection token of a queue registered with `JobBrokerModule.registerQueue`. */
export function getQueueToken(name: string): string {
  return `JobBrokerQueue_${name}`;
}

export const PROCESSOR_METADATA = "jobbroker:processor";
export const PROCESS_METADATA = "jobbroker:process";
export const LISTENER_METADATA = "jobbroker:listener";

/** `@Processor(queue)` options. */
export interface ProcessorOptions {
  /** The queue the class's `@Process` methods serve. */
  name: string;
}

/** `@Process(name)` options. */
export interface ProcessOptions {
  /** The job name the method processes; none: every job no named method takes. */
  name?: string;
  /** Jobs of this name run at once at most (default 1, as in Bull); they add up per class. */
  concurrency?: number;
}

/** Marks a class whose `@Process` methods process the jobs of `queue`. */
export function Processor(queue: string | ProcessorOptions): ClassDecorator {
  const options: ProcessorOptions = typeof queue === "string" ? { name: queue } : queue;
  return SetMetadata(PROCESSOR_METADATA, options);
}

/** Marks a method that processes the jobs named `name` (all others without a name). */
export function Process(name?: string | ProcessOptions): MethodDecorator {
  const options: ProcessOptions = typeof name === "string" ? { name } : (name ?? {});
  return SetMetadata(PROCESS_METADATA, options);
}

/** Injects the queue registered under `name`. */
export function InjectQueue(name: string): ParameterDecorator & PropertyDecorator {
  return Inject(getQueueToken(name));
}

/** The queue events a `@Processor` class may listen to, fed by the broker's WatchEvents. */
export type QueueEventName = "active" | "completed" | "failed" | "progress" | "stalled" | "waiting" | "paused" | "resumed" | "removed" | "drained" | "error";

/** Calls the method on `event` of the class's queue (`@OnQueueCompleted()` and the like). */
export function OnQueueEvent(event: QueueEventName): MethodDecorator {
  return SetMetadata(LISTENER_METADATA, event);
}

/** `(job)` when a worker starts a job. */
export const OnQueueActive = (): MethodDecorator => OnQueueEvent("active");
/** `(job, result)` when a job completes. */
export const OnQueueCompleted = (): MethodDecorator => OnQueueEvent("completed");
/** `(job, error)` when an attempt fails (timeouts included). */
export const OnQueueFailed = (): MethodDecorator => OnQueueEvent("failed");
/** `(job, progress)` when a worker reports progress. */
export const OnQueueProgress = (): MethodDecorator => OnQueueEvent("progress");
/** `(job)` when a job's lease ran out without renewal (its worker died or hung). */
export const OnQueueStalled = (): MethodDecorator => OnQueueEvent("stalled");
/** `(jobId)` when a job becomes waiting. */
export const OnQueueWaiting = (): MethodDecorator => OnQueueEvent("waiting");
/** `()` when the queue is paused. */
export const OnQueuePaused = (): MethodDecorator => OnQueueEvent("paused");
/** `()` when the queue is resumed. */
export const OnQueueResumed = (): MethodDecorator => OnQueueEvent("resumed");
/** `(job)` when a job is removed. */
export const OnQueueRemoved = (): MethodDecorator => OnQueueEvent("removed");
/** `()` when the queue ran empty: a worker took its last waiting job (Bull's `drained`). */
export const OnQueueDrained = (): MethodDecorator => OnQueueEvent("drained");
/** `(error)` when the queue's event feed fails for good. */
export const OnQueueError = (): MethodDecorator => OnQueueEvent("error");
