// The module's injection tokens and options (apart, so module.ts and explorer.ts import them
// without importing each other).

import type { ClientOptions, WorkerOptions } from "@jobbroker/client";

/** The module's options token. */
export const JOBBROKER_OPTIONS = "JobBrokerModuleOptions";
/** The token of the app's jobbroker `Client` (inject it for the calls Bull's Queue lacks). */
export const JOBBROKER_CLIENT = "JobBrokerClient";

/** `JobBrokerModule.forRoot` options: where the broker is and how to talk to it. */
export interface JobBrokerModuleOptions extends ClientOptions {
  /** Settings of the workers `@Processor` classes get (lease, grace, wait, workerId). */
  worker?: Pick<WorkerOptions, "lease" | "grace" | "wait" | "workerId">;
}
