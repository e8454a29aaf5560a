// The app's AI client (the guide's OpenAIService). This example answers locally so it runs
// without network or API key: it counts the history's words, takes 2 s on a conversation
// whose id starts with "slow" and fails on one that starts with "fail".
import { Injectable } from '@nestjs/common';

import type { Message } from './conversation.service';

@Injectable()
export class OpenAIService {
  async generateCompletion(history: Message[]): Promise<{ content: string; tokens: number }> {
    const context = history[0]?.content ?? '';
    if (context.startsWith('conversation fail')) throw new Error('the model is unavailable');
    if (context.startsWith('conversation slow')) await new Promise((done) => setTimeout(done, 2_000));
    const words = history.map((m) => m.content).join(' ').split(/\s+/).length;
    return { content: `Read ${history.length} message(s), ${words} words.`, tokens: words };
  }
}
