// One error class per broker error reason, built from the gRPC status and the
// google.rpc.ErrorInfo the broker puts in the grpc-status-details-bin trailer. The names are
// the Python client's (clients/python/jobbroker/errors.py); the reasons are the generated
// ErrorReason enum's, and the table below must name a class for each of them (tsc fails
// when the proto gains a reason this file does not map).

import { fromBinary } from "@bufbuild/protobuf";
import { anyIs, anyUnpack } from "@bufbuild/protobuf/wkt";
import { status as Status, type Metadata, type ServiceError } from "@grpc/grpc-js";

import { ErrorInfoSchema } from "./gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "./gen/google/rpc/status_pb.js";
import { ErrorReason } from "./gen/jobbroker/v1/error_reason_pb.js";

export { Status };

/** The ErrorInfo domain of the broker's errors. */
export const DOMAIN = "jobbroker.v1";
const DETAILS_KEY = "grpc-status-details-bin";

/** A reason's name as the broker sends it (`ErrorReason` without `ERROR_REASON_`). */
export type ReasonName = Exclude<keyof typeof ErrorReason, "UNSPECIFIED">;

function reasonName(reason: ErrorReason): ReasonName {
  return ErrorReason[reason] as ReasonName;
}

/** Base of every error the broker answers with. */
export class JobBrokerError extends Error {
  /** The gRPC status code. */
  readonly code: Status;
  /** The ErrorInfo reason (for example `LEASE_EXPIRED`); empty when the broker sent none. */
  readonly reason: string;
  /** The ErrorInfo metadata (for example `field`, `limit`, `queue`). */
  readonly metadata: Readonly<Record<string, string>>;

  /** The status code of this class, when the broker's status does not say. */
  static readonly defaultCode: Status = Status.UNKNOWN;
  /** The reason this class stands for (empty for a class of several reasons). */
  static readonly reasonName: string = "";

  constructor(
    message: string,
    options: { code?: Status; reason?: string; metadata?: Record<string, string>; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    const own = this.constructor as typeof JobBrokerError;
    this.name = own.name;
    this.code = options.code ?? own.defaultCode;
    this.reason = options.reason || own.reasonName || "";
    this.metadata = { ...options.metadata };
  }
}

/** A request field is missing or wrong; `field` names it. */
export class InvalidArgument extends JobBrokerError {
  static override readonly defaultCode: Status = Status.INVALID_ARGUMENT;
  static override readonly reasonName: string = reasonName(ErrorReason.INVALID_FIELD);
  /** The field at fault, for example `options.priority` or `jobs[3].name`. */
  get field(): string {
    return this.metadata.field ?? "";
  
}
}
/** No job with that id in that queue (or it was removed). */
export class JobNotFound extends JobBrokerError {
  static override readonly defaultCode: Status = Status.NOT_FOUND;
  static override readonly reasonName: string = reasonName(ErrorReason.JOB_NOT_FOUND);
}
/** No schedule with that key in that queue. */
export class ScheduleNotFound extends JobBrokerError {
  static override readonly defaultCode: Status = Status.NOT_FOUND;
  static override readonly reasonName: string = reasonName(ErrorReason.SCHEDULE_NOT_FOUND);
}
/** A custom job id names an existing job with another name or data. */
export class JobIdConflict extends JobBrokerError {
  static override readonly defaultCode: Status = Status.ALREADY_EXISTS;
  static override readonly reasonName: string = reasonName(ErrorReason.JOB_ID_CONFLICT);
}

/** The lease a worker call named is no longer valid; the call changed nothing. */
export class LeaseError extends JobBrokerError {
  static override readonly defaultCode: Status = Status.FAILED_PRECONDITION;
}
export class LeaseExpired extends LeaseError {
  static override readonly reasonName: string = reasonName(ErrorReason.LEASE_EXPIRED);
}
export class LeaseSuperseded extends LeaseError {
  static override readonly reasonName: string = reasonName(ErrorReason.LEASE_SUPERSEDED);
}

/** The job is not in a state that allows the call. */
export class JobStateError extends JobBrokerError {
  static override readonly defaultCode: Status = Status.FAILED_PRECONDITION;
}
/** The job is active (Remove): cancel it first. */
export class JobActive extends JobStateError {
  static override readonly reasonName: string = reasonName(ErrorReason.JOB_ACTIVE);
}
/** The job already finished (Cancel). */
export class JobFinished extends JobStateError {
  static override readonly reasonName: string = reasonName(ErrorReason.JOB_FINISHED);
}
/** Promote of a job that is not delayed. */
export class JobNotDelayed extends JobStateError {
  static override readonly reasonName: string = reasonName(ErrorReason.JOB_NOT_DELAYED);
}
/** Retry of a job that is neither failed nor cancelled. */
export class JobNotRetryable extends JobStateError {
  static override readonly reasonName: string = reasonName(ErrorReason.JOB_NOT_RETRYABLE);
}

/** A size or count limit was exceeded; `limit` names the setting, `field` the field. */
export class LimitExceeded extends JobBrokerError {
  static override readonly defaultCode: Status = Status.RESOURCE_EXHAUSTED;
  static override readonly reasonName: string = reasonName(ErrorReason.LIMIT_EXCEEDED);
  get limit(): string {
    return this.metadata.limit ?? "";
  
}
  get field(): string {
    return this.metadata.field ?? "";
  }
}

/** The broker or its Redis cannot be reached right now; retry later. */
export class Unavailable extends JobBrokerError {
  static override readonly defaultCode: Status = Status.UNAVAILABLE;
}
export class RedisUnavailable extends Unavailable {
  static override readonly reasonName: string = reasonName(ErrorReason.REDIS_UNAVAILABLE);
}
export class ShuttingDown extends Unavailable {
  static override readonly reasonName: string = reasonName(ErrorReason.SHUTTING_DOWN);
}
/** The token's grants changed while a stream was open; reconnect (the clients do). */
export class TokenChanged extends Unavailable {
  static override readonly reasonName: string = reasonName(ErrorReason.TOKEN_CHANGED);
}

/** The call carries no valid API token (missing, malformed, unknown or revoked); `reason` says which. */
export class Unauthenticated extends JobBrokerError {
  static override readonly defaultCode: Status = Status.UNAUTHENTICATED;
  static override readonly reasonName: string = reasonName(ErrorReason.TOKEN_UNKNOWN);
}

/** The token's grants do not allow this method on this queue (metadata `queue`, `permission`). */
export class PermissionDenied extends JobBrokerError {
  static override readonly defaultCode: Status = Status.PERMISSION_DENIED;
  static override readonly reasonName: string = reasonName(ErrorReason.PERMISSION_DENIED);
}

/** The call's deadline passed before the broker answered. */
export class DeadlineExceeded extends JobBrokerError {
  static override readonly defaultCode: Status = Status.DEADLINE_EXCEEDED;
}

/** The call was cancelled (by its AbortSignal, or by closing the client). */
export class Cancelled extends JobBrokerError {
  static override readonly defaultCode: Status = Status.CANCELLED;
}

type ErrorClass = new (
  message: string,
  options?: { code?: Status; reason?: string; metadata?: Record<string, string>; cause?: unknown },
) => JobBrokerError;

/** The class of each reason: one entry per member of the generated enum. */
const BY_REASON: { readonly [K in ReasonName]: ErrorClass } = {
  INVALID_FIELD: InvalidArgument,
  JOB_NOT_FOUND: JobNotFound,
  JOB_ID_CONFLICT: JobIdConflict,
  LEASE_EXPIRED: LeaseExpired,
  LEASE_SUPERSEDED: LeaseSuperseded,
  JOB_ACTIVE: JobActive,
  JOB_FINISHED: JobFinished,
  JOB_NOT_DELAYED: JobNotDelayed,
  JOB_NOT_RETRYABLE: JobNotRetryable,
  LIMIT_EXCEEDED: LimitExceeded,
  REDIS_UNAVAILABLE: RedisUnavailable,
  SHUTTING_DOWN: ShuttingDown,
  SCHEDULE_NOT_FOUND: ScheduleNotFound,
  TOKEN_MISSING: Unauthenticated,
  TOKEN_MALFORMED: Unauthenticated,
  TOKEN_UNKNOWN: Unauthenticated,
  TOKEN_REVOKED: Unauthenticated,
  TOKEN_CHANGED: TokenChanged,
  PERMISSION_DENIED: PermissionDenied,
  // The job may or may not be stored (docs/scaling.md): as in Python, a plain Unavailable.
  DURABILITY_TIMEOUT: Unavailable,
};

/** The class for a status without a known reason. */
const BY_CODE: Partial<Record<Status, ErrorClass>> = {
  [Status.INVALID_ARGUMENT]: InvalidArgument,
  [Status.NOT_FOUND]: JobNotFound,
  [Status.ALREADY_EXISTS]: JobIdConflict,
  [Status.RESOURCE_EXHAUSTED]: LimitExceeded,
  [Status.UNAVAILABLE]: Unavailable,
  [Status.DEADLINE_EXCEEDED]: DeadlineExceeded,
  [Status.UNAUTHENTICATED]: Unauthenticated,
  [Status.PERMISSION_DENIED]: PermissionDenied,
  [Status.CANCELLED]: Cancelled,
};

/** The class a reason maps to (for tests and tools); undefined for an unknown reason. */
export function errorClassFor(reason: string): ErrorClass | undefined {
  return Object.hasOwn(BY_REASON, reason) ? BY_REASON[reason as ReasonName] : undefined;
}

/** The error for a status code and reason (also used for stream items' errors). */
export function errorFromReason(
  code: Status,
  reason: string,
  message: string,
  metadata: Record<string, string> = {},
  cause?: unknown,
): JobBrokerError {
  const cls = errorClassFor(reason) ?? BY_CODE[code] ?? JobBrokerError;
  return new cls(message, { code, reason, metadata, cause });
}

/** The ErrorInfo of a call's trailers, if the broker sent one. */
export function errorInfo(trailers: Metadata | undefined): { reason: string; metadata: Record<string, string> } | undefined {
  for (const value of trailers?.get(DETAILS_KEY) ?? []) {
    if (typeof value === "string") continue;
    const status = fromBinary(StatusSchema, value);
    for (const detail of status.details) {
      if (anyIs(detail, ErrorInfoSchema)) {
        const info = anyUnpack(detail, ErrorInfoSchema);
        if (info) return { reason: info.reason, metadata: { ...info.metadata } };
      }
    }
  }
  return undefined;
}

function isServiceError(error: unknown): error is ServiceError {
  return error instanceof Error && typeof (error as Partial<ServiceError>).code === "number" && "metadata" in error;
}

/** The JobBrokerError for what a grpc-js call failed with (other errors are returned as they are). */
export function fromServiceError(error: unknown): unknown {
  if (!isServiceError(error)) return error;
  const info = errorInfo(error.metadata);
  const message = error.details || Status[error.code] || "error";
  return errorFromReason(error.code, info?.reason ?? "", message, info?.metadata ?? {}, error);
}

/** Thrown by `wait()` for a job that failed; carries the job. */
export class JobFailed extends Error {
  constructor(readonly job: { id: string; queue: string; failure?: { reason: string; message: string } | undefined }) {
    const detail = job.failure ? `${job.failure.reason}: ${job.failure.message}` : "failed";
    super(`job ${job.id} of queue ${job.queue} failed (${detail})`);
    this.name = "JobFailed";
  }
}

/** Thrown by `wait()` for a job that was cancelled. */
export class JobCancelled extends Error {
  constructor(readonly job: { id: string; queue: string }) {
    super(`job ${job.id} of queue ${job.queue} was cancelled`);
    this.name = "JobCancelled";
  }
}
