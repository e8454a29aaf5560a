// The guide's "Listen to Job Events" snippet; only the imports differ. (It is the guide's
// second `AiService`; ai.module.ts imports it under another name.)
import { Injectable } from '@nestjs/common';
import { InjectQueue } from '@jobbroker/nestjs';
import { Queue } from '@jobbroker/nestjs';

@Injectable()
export class AiService {
  constructor(@InjectQueue('ai-tasks') private queue: Queue) {
    // Job completed
    this.queue.on('completed', (job, result) => {
      console.log(`Job ${job.id} completed:`, result);
    });

    // Job failed
    this.queue.on('failed', (job, error) => {
      console.error(`Job ${job.id} failed:`, error.message);
    });

    // Job progress
    this.queue.on('progress', (job, progress) => {
      console.log(`Job ${job.id} progress: ${progress}%`);
    });

    // Job stalled (worker died)
    this.queue.on('stalled', (job) => {
      console.warn(`Job ${job.id} stalled`);
    });

    // Queue drained (all jobs completed)
    this.queue.on('drained', () => {
      console.log('Queue is empty');
    });
  }
}
