// Waiting: retry delays with jitter, and sleeps that an AbortSignal cuts short.

/**
 * Milliseconds to wait before retry `attempt` (0-based): exponential, capped, with jitter drawn
 * from the upper half so concurrent clients do not retry in step.
 */
export function retryDelay(attempt: number, base: number, cap: number): number {
  const delay = Math.min(cap, base * 2 ** attempt);
  return delay / 2 + Math.random() * (delay / 2);
}

/** Resolve after `ms` milliseconds, or reject with the signal's reason once it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason as Error);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason as Error);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Exponential backoff with jitter for reconnecting loops: reset after a success. */
export class Backoff {
  private failures = 0;

  constructor(
    private readonly first = 50,
    private readonly cap = 1_000,
  ) {}

  next(): number {
    return retryDelay(this.failures++, this.first, this.cap);
  }

  reset(): void {
    this.failures = 0;
  }
}
