// Finds the `@Processor` classes when the app starts: one jobbroker Worker per class runs its
// `@Process` methods, and its `@OnQueue...` methods listen to the queue's events. Closes them
// (gracefully) when the app shuts down.

import { Inject, Injectable, Logger, type BeforeApplicationShutdown, type OnApplicationBootstrap, type OnApplicationShutdown } from "@nestjs/common";
import { DiscoveryService, MetadataScanner, Reflector } from "@nestjs/core";
import { setLogger, Worker, type Client, type WorkerJob } from "@jobbroker/client";

import { LISTENER_METADATA, PROCESS_METADATA, PROCESSOR_METADATA, type ProcessOptions, type ProcessorOptions, type QueueEventName } from "./decorators.js";
import { Job } from "./job.js";
import { JOBBROKER_CLIENT, JOBBROKER_OPTIONS, type JobBrokerModuleOptions } from "./tokens.js";
import { Queue } from "./queue.js";

type Method = (...args: unknown[]) => unknown;

@Injectable()
export class JobBrokerExplorer implements OnApplicationBootstrap, BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly logger = new Logger("JobBroker");
  private readonly workers: Worker[] = [];
  private readonly queues: Queue[] = [];

  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly reflector: Reflector,
    @Inject(JOBBROKER_OPTIONS) private readonly options: JobBrokerModuleOptions,
    @Inject(JOBBROKER_CLIENT) private readonly client: Client,
  ) {
    setLogger(this.logger);
  }

  async onApplicationBootstrap(): Promise<void> {
    for (const wrapper of this.discovery.getProviders()) {
      const { instance, metatype } = wrapper;
      if (!instance || !metatype || typeof instance !== "object") continue;
      const processor = this.reflector.get<ProcessorOptions | undefined>(PROCESSOR_METADATA, metatype);
      if (processor) await this.serve(instance as Record<string, unknown>, processor.name);
    }
  }

  private async serve(instance: Record<string, unknown>, queue: string): Promise<void> {
    const prototype = Object.getPrototypeOf(instance) as object;
    const processes: [ProcessOptions, Method][] = [];
    const listeners: [QueueEventName, Method][] = [];
    for (const name of this.scanner.getAllMethodNames(prototype)) {
      const method = instance[name] as Method;
      const process = this.reflector.get<ProcessOptions | undefined>(PROCESS_METADATA, method);
      if (process) processes.push([process, method.bind(instance)]);
      const event = this.reflector.get<QueueEventName | undefined>(LISTENER_METADATA, method);
      if (event) listeners.push([event, method.bind(instance)]);
    }
    if (listeners.length) {
      const events = new Queue(this.client, { name: queue });
      for (const [event, method] of listeners) {
        events.on(event, (...args: unknown[]) => {
          Promise.resolve(method(...args)).catch((e: unknown) => this.logger.error(`${queue} ${event} listener: ${String(e)}`));
        });
      }
      this.queues.push(events);
    }
    if (!processes.length) return;
    // Bull's concurrencies add up per processor class: one worker runs them all.
    const concurrency = processes.reduce((sum, [options]) => sum + (options.concurrency ?? 1), 0);
    const worker = new Worker(queue, { ...this.options, ...this.options.worker, concurrency });
    for (const [options, method] of processes) {
      const run = (job: WorkerJob) => method(Job.fromWorker(this.client, job));
      if (options.name) worker.process(options.name, run);
      else worker.process(run);
    }
    await worker.start();
    this.workers.push(worker);
    this.logger.log(`processing ${queue} (${processes.length} job name(s), concurrency ${concurrency})`);
  }

  /** Stop leasing and let running jobs finish (within the worker's grace) before the app closes. */
  async beforeApplicationShutdown(): Promise<void> {
    await Promise.all([...this.workers.map((w) => w.close()), ...this.queues.map((q) => q.close())]);
  }

  onApplicationShutdown(): void {
    this.client.close();
  }
}
