// What every client call shares: the channel, deadlines, the retry policy and server streams
// that resume after the last event they delivered.

import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import type * as grpc from "@grpc/grpc-js";

import { baseMetadata, openChannel, target, DEFAULT_ADDRESS, type ConnectionOptions } from "./channel.js";
import { Cancelled, fromServiceError, JobBrokerError, ShuttingDown, Status, Unavailable } from "./errors.js";
import { ServiceClient, type MethodsOfKind, type ReplyOf, type RequestOf } from "./rpc.js";
import { retryDelay, sleep } from "./timing.js";

/** How a `Client` connects and retries. */
export interface ClientOptions extends ConnectionOptions {
  /** Deadline of each unary call in milliseconds, retries included (default 10,000). */
  timeout?: number;
  /** Retries of a call that failed with UNAVAILABLE, when repeating it is harmless (default 3). */
  retries?: number;
  /** First wait before a retry, in milliseconds; doubles each time (default 100). */
  retryBackoff?: number;
  /** Longest wait before a retry, in milliseconds (default 2,000). */
  retryBackoffMax?: number;
}

/** Options of one call. */
export interface CallOptions {
  /**
   * Milliseconds the call may take (its gRPC deadline, retries included). On a stream it
   * bounds the whole stream; by default a stream lasts as long as it has something to say.
   */
  timeout?: number;
  /** Abort the call (it rejects with `Cancelled`). */
  signal?: AbortSignal;
}

/** The channel, deadlines and retry policy of a client. */
export class BaseClient {
  /** The gRPC target the client connects to. */
  readonly target: string;
  readonly timeout: number;
  readonly retries: number;
  readonly retryBackoff: number;
  readonly retryBackoffMax: number;
  private channel: grpc.Client | undefined;
  private closed = false;
  // One adapter per service, all on the one channel.
  private readonly services = new Map<unknown, unknown>();

  constructor(protected readonly options: ClientOptions = {}) {
    this.target = target(options.address ?? DEFAULT_ADDRESS);
    this.timeout = options.timeout ?? 10_000;
    this.retries = options.retries ?? 3;
    this.retryBackoff = options.retryBackoff ?? 100;
    this.retryBackoffMax = options.retryBackoffMax ?? 2_000;
    if (!(this.timeout > 0)) throw new RangeError("timeout: must be more than 0 milliseconds");
    if (this.retries < 0 || this.retryBackoff < 0 || this.retryBackoffMax < 0) {
      throw new RangeError("retries, retryBackoff and retryBackoffMax must not be negative");
    }
  }

  /** Close the connection; calls in flight fail with `Cancelled`. */
  close(): void {
    this.closed = true;
    this.channel?.close();
    this.channel = undefined;
    this.services.clear();
  }

  /** `await using client = new Client(...)` closes it at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }

  protected service<S extends GenServiceMethods>(descriptor: GenService<S>): ServiceClient<S> {
    if (this.closed) throw new Error("the client is closed");
    let found = this.services.get(descriptor);
    if (found === undefined) {
      this.channel ??= openChannel({ ...this.options, address: this.target });
      found = new ServiceClient(this.channel, descriptor, baseMetadata(this.options.token));
      this.services.set(descriptor, found);
    }
    return found as ServiceClient<S>;
  }

  /** Milliseconds to wait before retry `attempt` (0-based) after `error`, or -1 not to retry. */
  protected retryAfter(error: unknown, attempt: number, deadline: number | undefined, signal?: AbortSignal): number {
    if (this.closed || signal?.aborted) return -1;
    // A CANCELLED the broker sent (a call cut off as it stopped) counts as UNAVAILABLE.
    const retryable =
      error instanceof Unavailable || (error instanceof JobBrokerError && error.code === Status.CANCELLED);
    if (!retryable || attempt >= this.retries) return -1;
    const delay = retryDelay(attempt, this.retryBackoff, this.retryBackoffMax);
    if (deadline !== undefined && Date.now() + delay >= deadline) return -1;
    return delay;
  }

  /** The error to throw for a failure: ours once the call was aborted or the client closed. */
  private settle(error: unknown, signal: AbortSignal | undefined): unknown {
    if (this.closed) return new Cancelled("the client was closed during the call", { cause: error });
    if (signal?.aborted) return new Cancelled("the call was aborted", { cause: signal.reason });
    return error;
  }

  /**
   * A unary call with the client's deadline and retries. `idempotent` false: retried only on a
   * SHUTTING_DOWN refusal (the broker refused it before doing anything).
   */
  protected async unary<S extends GenServiceMethods, K extends MethodsOfKind<S, "unary">>(
    service: ServiceClient<S>,
    name: K,
    request: RequestOf<S, K>,
    call: CallOptions = {},
    idempotent = true,
  ): Promise<ReplyOf<S, K>> {
    const deadline = Date.now() + (call.timeout ?? this.timeout);
    for (let attempt = 0; ; attempt++) {
      let error: unknown;
      try {
        return await service.unary(name, request, { deadline }, call.signal);
      } catch (failure) {
        error = fromServiceError(failure);
      }
      const safe = idempotent || error instanceof ShuttingDown;
      const delay = safe ? this.retryAfter(error, attempt, deadline, call.signal) : -1;
      if (delay < 0) throw this.settle(error, call.signal);
      await sleep(delay, call.signal);
    }
  }

  /**
   * A server stream that resumes after the last event it delivered when the broker becomes
   * unreachable (with backoff; the retry count restarts with every message). `convert` turns
   * a message into the value to yield (`undefined`: nothing, only a new resume point) and the
   * new resume point.
   */
  protected async *resumable<R, T>(
    open: (after: string, deadline: number | undefined) => grpc.ClientReadableStream<R>,
    convert: (item: R, last: string) => [T | undefined, string],
    afterEventId: string,
    call: CallOptions,
  ): AsyncGenerator<T, void, undefined> {
    const deadline = call.timeout === undefined ? undefined : Date.now() + call.timeout;
    let last = afterEventId;
    let failures = 0;
    for (;;) {
      const stream = open(last, deadline);
      const abort = (): void => stream.cancel();
      call.signal?.addEventListener("abort", abort, { once: true });
      let delay: number;
      try {
        if (call.signal?.aborted) stream.cancel();
        for await (const item of stream as AsyncIterable<R>) {
          failures = 0;
          const [value, next] = convert(item, last);
          last = next;
          if (value !== undefined) yield value;
        }
        return;
      } catch (failure) {
        const error = fromServiceError(failure);
        delay = this.retryAfter(error, failures, deadline, call.signal);
        if (delay < 0) throw this.settle(error, call.signal);
      } finally {
        call.signal?.removeEventListener("abort", abort);
        stream.cancel();
      }
      await sleep(delay, call.signal);
      failures++;
    }
  }
}

