// The body of POST ai/queue (the guide names QueueAiTaskDto without showing it).
export class QueueAiTaskDto {
  conversationId!: string;
  message!: string;
}
