// The guide's endpoints carry @nestjs/swagger's @ApiOperation; this example does not serve an
// OpenAPI document, so it records the summary as route metadata only (swap in @nestjs/swagger's).
import { SetMetadata } from '@nestjs/common';

export const ApiOperation = (options: { summary: string }): MethodDecorator => SetMetadata('swagger/apiOperation', options);
