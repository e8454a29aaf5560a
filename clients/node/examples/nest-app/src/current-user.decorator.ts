// The guide's @CurrentUser('id'): the app's authentication is out of scope here; the user id
// comes from the x-user-id header.
import { createParamDecorator, type ExecutionContext } from '@nestjs/common';

export const CurrentUser = createParamDecorator((field: string, context: ExecutionContext) => {
  const request = context.switchToHttp().getRequest<{ headers: Record<string, string | undefined> }>();
  return field === 'id' ? request.headers['x-user-id'] ?? 'anonymous' : undefined;
});
