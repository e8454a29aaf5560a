// The guide's "API Endpoints" snippets (add, status, cancel); only the imports differ, and one
// fix: the guide's queueAiTask reads `job.id` from queueCompletion's `{ jobId, status }` answer,
// which is undefined under Bull as well.
import { Body, Controller, Delete, Get, NotFoundException, Param, Post } from '@nestjs/common';
import { InjectQueue } from '@jobbroker/nestjs';
import { Queue } from '@jobbroker/nestjs';

import { CurrentUser } from '../current-user.decorator';
import { ApiOperation } from '../swagger';
import { AiService } from './ai.service';
import { QueueAiTaskDto } from './queue-ai-task.dto';

@Controller()
export class AiController {
  constructor(
    private aiService: AiService,
    @InjectQueue('ai-tasks') private aiQueue: Queue,
  ) {}

@Post('ai/queue')
@ApiOperation({ summary: 'Queue AI completion task' })
async queueAiTask(
  @CurrentUser('id') userId: string,
  @Body() dto: QueueAiTaskDto,
) {
  const job = await this.aiService.queueCompletion(
    userId,
    dto.conversationId,
    dto.message,
  );

  return {
    jobId: job.jobId,
    status: 'queued',
  };
}

@Get('ai/jobs/:jobId')
@ApiOperation({ summary: 'Get job status' })
async getJobStatus(@Param('jobId') jobId: string) {
  return this.aiService.getJobStatus(jobId);
}

@Delete('ai/jobs/:jobId')
@ApiOperation({ summary: 'Cancel job' })
async cancelJob(@Param('jobId') jobId: string) {
  const job = await this.aiQueue.getJob(jobId);
  
  if (!job) {
    throw new NotFoundException('Job not found');
  }

  await job.remove();
  
  return { message: 'Job cancelled' };
}
}
