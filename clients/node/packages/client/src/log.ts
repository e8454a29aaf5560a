// Where the client and the worker report what a caller cannot catch (a stream that reconnects,
// a refused report): warnings and errors on the console by default (as Python's logging does
// without configuration), or everything to the application's logger (`setLogger`).

/** What the package logs with; Nest's `Logger`, pino and console all fit. */
export interface Logger {
  debug?(message: string): void;
  log(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

let current: Logger = {
  log: () => undefined,
  warn: (message) => console.warn(`jobbroker: ${message}`),
  error: (message) => console.error(`jobbroker: ${message}`),
};

/** Send the package's log lines to `logger`. */
export function setLogger(logger: Logger): void {
  current = logger;
}

export function debug(message: string): void {
  current.debug?.(message);
}

export function info(message: string): void {
  current.log(message);
}

export function warn(message: string): void {
  current.warn(message);
}

export function error(message: string): void {
  current.error(message);
}
