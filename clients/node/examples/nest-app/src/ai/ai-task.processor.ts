// The guide's "Create Processor" snippet; only the imports differ.
import { Processor, Process } from '@jobbroker/nestjs';
import { Job } from '@jobbroker/nestjs';
import { Logger } from '@nestjs/common';

import { ConversationService } from './conversation.service';
import { OpenAIService } from './openai.service';

@Processor('ai-tasks')
export class AiTaskProcessor {
  private readonly logger = new Logger(AiTaskProcessor.name);

  constructor(
    private openaiService: OpenAIService,
    private conversationService: ConversationService,
  ) {}

  @Process('generate-completion')
  async handleCompletion(job: Job) {
    this.logger.debug(`Processing job ${job.id}`);

    try {
      const { userId, conversationId, message } = job.data;

      // Update progress
      await job.progress(10);

      // Get conversation history
      const history = await this.conversationService.getConversationHistory(
        conversationId,
        userId,
      );

      await job.progress(30);

      // Generate AI response
      const response = await this.openaiService.generateCompletion(history);

      await job.progress(80);

      // Save to database
      await this.conversationService.addMessage(
        conversationId,
        'ASSISTANT',
        response.content,
      );

      await job.progress(100);

      this.logger.debug(`Job ${job.id} completed`);

      // Return result
      return {
        conversationId,
        content: response.content,
        tokens: response.tokens,
      };
    } catch (error) {
      this.logger.error(`Job ${job.id} failed: ${error.message}`);
      throw error;  // Will be retried based on job options
    }
  }
}
