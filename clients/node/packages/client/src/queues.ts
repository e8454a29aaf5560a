// The operators' calls of `Client` on the broker's QueueService: counts, pause and resume,
// bulk clean-ups, settings, live workers, the queue-wide event feed and repeatable jobs.
//
// Reads, pause/resume, settings and schedule calls are retried on UNAVAILABLE; the bulk
// operations (drain, clean, obliterate, retryFailed, promoteDelayed) are not: one whose answer
// was lost may have done its work, and a repeat would act on jobs added since.

import { create } from "@bufbuild/protobuf";

import { BaseClient, type CallOptions } from "./base.js";
import {
  QueueService,
  QueueSettingsSchema,
  RateLimitSchema,
  ScheduleSchema,
  type QueueInfo as PbQueueInfo,
  type QueueSettings as PbQueueSettings,
  type RateLimit as PbRateLimit,
  type Schedule as PbSchedule,
} from "./gen/jobbroker/v1/queue_service_pb.js";
import { JobBrokerError } from "./errors.js";
import { warn } from "./log.js";
import {
  decode,
  encode,
  eventFromProto,
  ms,
  optionsToProto,
  stateValue,
  type Event,
  type JobOptions,
  type JobState,
} from "./models.js";

/** At most `max` jobs start per `duration` milliseconds. */
export interface RateLimit {
  max: number;
  duration: number;
}

/** A queue's settings, enforced at lease time across every worker and broker replica. */
export interface QueueSettings {
  /** Jobs of the queue that may start per window. */
  rateLimit?: RateLimit;
  /** Most jobs of the queue active at once, across all workers; 0: no limit. */
  concurrency?: number;
  /** Jobs of one group (`JobOptions.group`) that may start per window. */
  groupRateLimit?: RateLimit;
  /** Lease expiries a job survives before it fails STALLED; 0: the broker's default. */
  maxStalled?: number;
}

/** Jobs per state. */
export interface JobCounts {
  waiting: number;
  delayed: number;
  active: number;
  completed: number;
  failed: number;
  cancelled: number;
}

/** A queue with its counts, pause flag and settings. */
export interface QueueInfo {
  name: string;
  counts: JobCounts;
  paused: boolean;
  settings: QueueSettings;
}

/** A worker seen leasing from a queue. */
export interface WorkerInfo {
  workerId: string;
  host: string;
  queues: string[];
  activeJobs: number;
  lastSeen?: Date;
}

/** A repeatable job: added on a cron schedule or every N milliseconds. */
export interface ScheduleSpec {
  /** The schedule's key, unique per queue. */
  key: string;
  /** The name of each job. */
  name: string;
  /** The data of each job. */
  data?: unknown;
  /** The options of each job (no `jobId` or `delay`: each run gets its own id). */
  options?: JobOptions;
  /** A cron expression (five fields, or six with seconds first). Exactly one of cron and every. */
  cron?: string;
  /** The IANA time zone the cron expression is read in (default UTC). */
  timezone?: string;
  /** Add a job every this many milliseconds (at least 1,000). */
  every?: number;
  /** Stop after this many jobs; 0: no limit. */
  limit?: number;
  /** No job before this time. */
  startAt?: Date;
  /** No job after this time. */
  endAt?: Date;
}

/** A schedule as the broker stores it. */
export interface Schedule extends ScheduleSpec {
  queue: string;
  /** When the next job will be added; undefined once the schedule ended. */
  nextRunAt?: Date;
  /** Jobs added so far. */
  runs: number;
  /** The message as received. */
  proto: PbSchedule;
}

function rateLimit(limit: PbRateLimit | undefined): RateLimit | undefined {
  return limit && limit.max ? { max: limit.max, duration: Number(limit.durationMs) } : undefined;
}

function settingsFromProto(settings: PbQueueSettings | undefined): QueueSettings {
  const out: QueueSettings = { concurrency: settings?.concurrency ?? 0, maxStalled: settings?.maxStalled ?? 0 };
  const rate = rateLimit(settings?.rateLimit);
  if (rate) out.rateLimit = rate;
  const group = rateLimit(settings?.groupRateLimit);
  if (group) out.groupRateLimit = group;
  return out;
}

function settingsToProto(settings: QueueSettings): PbQueueSettings {
  const limit = (value: RateLimit | undefined, field: string) =>
    value === undefined
      ? undefined
      : create(RateLimitSchema, { max: value.max, durationMs: ms(value.duration, `${field}.duration`) });
  return create(QueueSettingsSchema, {
    rateLimit: limit(settings.rateLimit, "rateLimit"),
    concurrency: settings.concurrency ?? 0,
    groupRateLimit: limit(settings.groupRateLimit, "groupRateLimit"),
    maxStalled: settings.maxStalled ?? 0,
  });
}

function queueFromProto(info: PbQueueInfo | undefined): QueueInfo {
  const counts = info?.counts;
  return {
    name: info?.name ?? "",
    counts: {
      waiting: Number(counts?.waiting ?? 0),
      delayed: Number(counts?.delayed ?? 0),
      active: Number(counts?.active ?? 0),
      completed: Number(counts?.completed ?? 0),
      failed: Number(counts?.failed ?? 0),
      cancelled: Number(counts?.cancelled ?? 0),
    },
    paused: info?.paused ?? false,
    settings: settingsFromProto(info?.settings),
  };
}

function scheduleFromProto(schedule: PbSchedule | undefined): Schedule {
  const s = schedule ?? create(ScheduleSchema);
  const at = (value: bigint): Date | undefined => (value ? new Date(Number(value)) : undefined);
  const out: Schedule = {
    key: s.key,
    queue: s.queue,
    name: s.name,
    data: decode(s.data),
    cron: s.cron,
    timezone: s.timezone,
    limit: s.limit,
    runs: s.runs,
    proto: s,
  };
  if (s.everyMs) out.every = Number(s.everyMs);
  for (const [key, value] of [
    ["startAt", s.startAtMs],
    ["endAt", s.endAtMs],
    ["nextRunAt", s.nextRunAtMs],
  ] as const) {
    const date = at(value);
    if (date) out[key] = date;
  }
  return out;
}

function epochMs(value: Date | undefined): bigint {
  return value === undefined ? 0n : BigInt(value.getTime());
}

/** The QueueService calls of `Client`. */
export class QueueCalls extends BaseClient {
  private queueService() {
    return this.service(QueueService);
  }

  /** Every queue the broker knows, by name, with its counts, pause flag and settings. */
  async queues(call?: CallOptions): Promise<QueueInfo[]> {
    const reply = await this.unary(this.queueService(), "listQueues", {}, call);
    return reply.queues.map(queueFromProto);
  }

  /** One queue's counts, pause flag and settings (a queue never used has zero counts). */
  async queue(queue: string, call?: CallOptions): Promise<QueueInfo> {
    const reply = await this.unary(this.queueService(), "getQueue", { queue }, call);
    return queueFromProto(reply.queue);
  }

  /** Pause a queue: no worker of any broker gets a job from it until it is resumed. */
  async pause(queue: string, call?: CallOptions): Promise<void> {
    await this.unary(this.queueService(), "pauseQueue", { queue }, call);
  }

  /** Resume a paused queue. */
  async resume(queue: string, call?: CallOptions): Promise<void> {
    await this.unary(this.queueService(), "resumeQueue", { queue }, call);
  }

  /** Remove the waiting jobs (and the delayed ones with `includeDelayed`); how many. Not retried. */
  async drain(queue: string, includeDelayed = false, call?: CallOptions): Promise<number> {
    const reply = await this.unary(this.queueService(), "drainQueue", { queue, includeDelayed }, call, false);
    return Number(reply.removed);
  }

  /**
   * Remove up to `limit` jobs in `state` (completed, failed, cancelled, waiting or delayed)
   * that entered it at least `grace` milliseconds ago; the ids removed. Not retried.
   */
  async clean(queue: string, state: JobState, grace = 0, limit = 1000, call?: CallOptions): Promise<string[]> {
    const request = { queue, state: stateValue(state), graceMs: ms(grace, "grace"), limit };
    const reply = await this.unary(this.queueService(), "cleanQueue", request, call, false);
    return [...reply.jobIds];
  }

  /** Remove everything of a queue; the number of jobs and schedules removed. Not retried. */
  async obliterate(queue: string, force = false, call?: CallOptions): Promise<number> {
    const reply = await this.unary(this.queueService(), "obliterateQueue", { queue, force }, call, false);
    return Number(reply.removed);
  }

  /** Move every failed job back to waiting with fresh attempts; how many. Not retried. */
  async retryFailed(queue: string, call?: CallOptions): Promise<number> {
    const reply = await this.unary(this.queueService(), "retryFailedJobs", { queue }, call, false);
    return Number(reply.retried);
  }

  /** Make every delayed job waiting now; how many. Not retried. */
  async promoteDelayed(queue: string, call?: CallOptions): Promise<number> {
    const reply = await this.unary(this.queueService(), "promoteDelayedJobs", { queue }, call, false);
    return Number(reply.promoted);
  }

  /** Replace a queue's settings as a whole (what is left out is reset); the settings in force. */
  async updateSettings(queue: string, settings: QueueSettings, call?: CallOptions): Promise<QueueSettings> {
    const request = { queue, settings: settingsToProto(settings) };
    const reply = await this.unary(this.queueService(), "updateQueueSettings", request, call);
    return settingsFromProto(reply.settings);
  }

  /** The workers seen leasing from a queue in the last minute, most recent first. */
  async workers(queue: string, call?: CallOptions): Promise<WorkerInfo[]> {
    const reply = await this.unary(this.queueService(), "listWorkers", { queue }, call);
    return reply.workers.map((w) => {
      const out: WorkerInfo = { workerId: w.workerId, host: w.host, queues: [...w.queues], activeJobs: w.activeJobs };
      if (w.lastSeenMs) out.lastSeen = new Date(Number(w.lastSeenMs));
      return out;
    });
  }

  /**
   * Every event of a queue as it happens (Bull's `QueueEvents`), without an end: break out of
   * the loop (or abort its signal) to stop. With `afterEventId` it starts after that event;
   * without, with the events from now on. Across a broker restart it reconnects and resumes
   * after the last event it delivered (before the first one, from where the watch started); should the broker no longer keep that event, it goes
   * on from the oldest it keeps (and warns: events were lost in between).
   */
  watchEvents(queue: string, options: CallOptions & { afterEventId?: string } = {}): AsyncGenerator<Event, void, undefined> {
    return this.resumable(
      (after, deadline) =>
        this.queueService().serverStream(
          "watchEvents",
          { queue, afterEventId: after, sendStart: true },
          deadline === undefined ? {} : { deadline },
        ),
      (item, last): [Event | undefined, string] => {
        // Where the watch starts (a resume point before any event), sent first: no event.
        if (!item.event && item.startEventId) return [undefined, item.startEventId];
        if (item.resumePointTrimmed) warn(`queue ${queue} no longer keeps event ${last}: events after it were lost`);
        if (!item.event) throw new JobBrokerError("the broker sent a WatchEvents message without an event");
        return [eventFromProto(item.event), item.event.eventId || last];
      },
      options.afterEventId ?? "",
      options,
    );
  }

  /**
   * Create or replace the repeatable job `spec.key` of a queue (Bull's repeatable jobs): exactly
   * one of `cron` and `every`. The schedule as stored, with its `nextRunAt`.
   */
  async upsertSchedule(queue: string, spec: ScheduleSpec, call?: CallOptions): Promise<Schedule> {
    if (Boolean(spec.cron) === (spec.every !== undefined)) {
      throw new TypeError("upsertSchedule: give exactly one of cron and every");
    }
    const schedule = create(ScheduleSchema, {
      key: spec.key,
      queue,
      name: spec.name,
      data: encode(spec.data),
      options: optionsToProto(spec.options),
      cron: spec.cron ?? "",
      timezone: spec.timezone ?? "",
      everyMs: ms(spec.every, "every"),
      limit: spec.limit ?? 0,
      startAtMs: epochMs(spec.startAt),
      endAtMs: epochMs(spec.endAt),
    });
    const reply = await this.unary(this.queueService(), "upsertSchedule", { schedule }, call);
    return scheduleFromProto(reply.schedule);
  }

  /** A queue's repeatable jobs, by next run time. */
  async schedules(queue: string, call?: CallOptions): Promise<Schedule[]> {
    const reply = await this.unary(this.queueService(), "listSchedules", { queue }, call);
    return reply.schedules.map(scheduleFromProto);
  }

  /** One repeatable job; throws `ScheduleNotFound`. */
  async schedule(queue: string, key: string, call?: CallOptions): Promise<Schedule> {
    const reply = await this.unary(this.queueService(), "getSchedule", { queue, key }, call);
    return scheduleFromProto(reply.schedule);
  }

  /** Remove a repeatable job; the jobs it already added stay. */
  async removeSchedule(queue: string, key: string, call?: CallOptions): Promise<void> {
    await this.unary(this.queueService(), "removeSchedule", { queue, key }, call);
  }

  /**
   * Make the broker check the data of every job named `name` added to `queue` against a JSON
   * Schema (an object or JSON text); `null` removes the check. Whether the stored schema
   * changed. A job whose data breaks it is refused with `InvalidArgument` naming the data's path
   * (`field`) and the rule (docs/schemas.md).
   */
  async setJobSchema(queue: string, name: string, schema: object | string | null, call?: CallOptions): Promise<boolean> {
    const text = schema === null ? "" : typeof schema === "string" ? schema : JSON.stringify(schema);
    const reply = await this.unary(this.queueService(), "setJobSchema", { queue, name, schema: text }, call);
    return reply.changed;
  }

  /** A queue's job data schemas, by job name. */
  async jobSchemas(queue: string, call?: CallOptions): Promise<Record<string, unknown>> {
    const reply = await this.unary(this.queueService(), "listJobSchemas", { queue }, call);
    return Object.fromEntries(reply.schemas.map((item) => [item.name, JSON.parse(item.schema) as unknown]));
  }
}
