// JobBrokerModule: @nestjs/bull's BullModule for jobbroker. `forRoot` says where the broker is
// (one client for the app); `registerQueue` provides each queue to `@InjectQueue(name)`.

import { Module, type DynamicModule, type Provider } from "@nestjs/common";
import { DiscoveryModule } from "@nestjs/core";
import { Client } from "@jobbroker/client";

import { getQueueToken } from "./decorators.js";
import { JobBrokerExplorer } from "./explorer.js";
import { Queue, type QueueOptions } from "./queue.js";
import { JOBBROKER_CLIENT, JOBBROKER_OPTIONS, type JobBrokerModuleOptions } from "./tokens.js";

@Module({})
export class JobBrokerModule {
  /** The broker connection for the whole app: `{ address, token, tls }` and client settings. */
  static forRoot(options: JobBrokerModuleOptions = {}): DynamicModule {
    const providers: Provider[] = [
      { provide: JOBBROKER_OPTIONS, useValue: options },
      { provide: JOBBROKER_CLIENT, useFactory: () => new Client(options) },
      JobBrokerExplorer,
    ];
    return {
      module: JobBrokerModule,
      global: true,
      imports: [DiscoveryModule],
      providers,
      exports: [JOBBROKER_OPTIONS, JOBBROKER_CLIENT],
    };
  }

  /** Provide queues to `@InjectQueue(name)`: `registerQueue({ name: "ai-tasks" })`. */
  static registerQueue(...queues: QueueOptions[]): DynamicModule {
    const providers: Provider[] = queues.map((queue) => ({
      provide: getQueueToken(queue.name),
      useFactory: (client: Client) => new Queue(client, queue),
      inject: [JOBBROKER_CLIENT],
    }));
    return { module: JobBrokerModule, providers, exports: providers };
  }
}
