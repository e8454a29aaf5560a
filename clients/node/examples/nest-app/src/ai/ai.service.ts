// The guide's "Add Jobs to Queue" and "Check Job Status" snippets; only the imports differ.
import { Injectable, NotFoundException } from '@nestjs/common';
import { InjectQueue } from '@jobbroker/nestjs';
import { Queue } from '@jobbroker/nestjs';

@Injectable()
export class AiService {
  constructor(
    @InjectQueue('ai-tasks') private aiQueue: Queue,
  ) {}

  async queueCompletion(
    userId: string,
    conversationId: string,
    message: string,
  ) {
    // Add job to queue
    const job = await this.aiQueue.add(
      'generate-completion',  // Job name
      {
        // Job data
        userId,
        conversationId,
        message,
        model: 'gpt-4',
        maxTokens: 4096,
        temperature: 0.7,
      },
      {
        // Job options
        attempts: 3,              // Retry 3 times
        backoff: {
          type: 'exponential',
          delay: 5000,            // Start with 5s delay
        },
        removeOnComplete: 100,    // Keep last 100 completed
        removeOnFail: 500,        // Keep last 500 failed
      }
    );

    return {
      jobId: job.id,
      status: 'queued',
    };
  }

async getJobStatus(jobId: string) {
  const job = await this.aiQueue.getJob(jobId);
  
  if (!job) {
    throw new NotFoundException('Job not found');
  }

  const state = await job.getState();
  const progress = job.progress();
  const result = job.returnvalue;
  const failedReason = job.failedReason;

  return {
    id: job.id,
    state,           // 'waiting', 'active', 'completed', 'failed'
    progress,        // 0-100
    result,          // Job result (if completed)
    failedReason,    // Error message (if failed)
    attempts: job.attemptsMade,
  };
}
}
