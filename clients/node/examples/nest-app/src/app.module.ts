// The guide's app.module.ts: BullModule.forRoot({ redis }) becomes JobBrokerModule.forRoot.
import { Module } from "@nestjs/common";
import { JobBrokerModule } from "@jobbroker/nestjs";

import { AiModule } from "./ai/ai.module";

@Module({
  imports: [
    JobBrokerModule.forRoot({
      address: process.env.JOBBROKER_ADDRESS ?? "127.0.0.1:50051",
      token: process.env.JOBBROKER_TOKEN,
    }),
    AiModule,
  ],
})
export class AppModule {}
