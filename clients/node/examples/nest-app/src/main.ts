// The guide's NestJS app on jobbroker. JOBBROKER_ADDRESS (default 127.0.0.1:50051) and
// JOBBROKER_TOKEN say where the broker is; PORT (default 3000, 0: a free one) the HTTP port.
import "reflect-metadata";

import { NestFactory } from "@nestjs/core";

import { AppModule } from "./app.module";

async function bootstrap(): Promise<void> {
  const app = await NestFactory.create(AppModule, { logger: ["log", "warn", "error"] });
  app.enableShutdownHooks();
  await app.listen(Number(process.env.PORT ?? 3000), "127.0.0.1");
  console.log(`nest app listening on ${await app.getUrl()}`);
}

void bootstrap();
