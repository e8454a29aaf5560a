// The guide's AiModule: its queue, its processor, its services and its endpoints.
import { Module } from "@nestjs/common";
import { JobBrokerModule as BullModule } from "@jobbroker/nestjs";

import { AiController } from "./ai.controller";
import { AiService as AiEventsService } from "./ai-events.service";
import { AiService } from "./ai.service";
import { AiTaskProcessor } from "./ai-task.processor";
import { ConversationService } from "./conversation.service";
import { OpenAIService } from "./openai.service";

@Module({
  imports: [
    BullModule.registerQueue({
      name: 'ai-tasks',
    }),
  ],
  controllers: [AiController],
  providers: [
    AiService,
    AiEventsService,
    AiTaskProcessor,  // Register processor
    OpenAIService,
    ConversationService,
  ],
})
export class AiModule {}
