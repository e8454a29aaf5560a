// The app's conversation store (the guide's ConversationService; in memory here).
import { Injectable } from '@nestjs/common';

export interface Message {
  role: 'SYSTEM' | 'USER' | 'ASSISTANT';
  content: string;
}

@Injectable()
export class ConversationService {
  private readonly conversations = new Map<string, Message[]>();

  async getConversationHistory(conversationId: string, userId: string): Promise<Message[]> {
    const stored = this.conversations.get(conversationId) ?? [];
    return [{ role: 'SYSTEM', content: `conversation ${conversationId} of user ${userId}` }, ...stored];
  }

  async addMessage(conversationId: string, role: Message['role'], content: string): Promise<void> {
    const stored = this.conversations.get(conversationId) ?? [];
    stored.push({ role, content });
    this.conversations.set(conversationId, stored);
  }
}
