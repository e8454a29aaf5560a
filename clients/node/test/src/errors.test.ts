// The error vocabulary: one class per reason of the generated ErrorReason enum, and the
// google.rpc.ErrorInfo read from the grpc-status-details-bin trailer.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { create, toBinary } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { Metadata, status } from "@grpc/grpc-js";

import {
  errorClassFor,
  errorFromReason,
  fromServiceError,
  InvalidArgument,
  JobBrokerError,
  JobNotFound,
  LeaseExpired,
  PermissionDenied,
  RedisUnavailable,
  ShuttingDown,
  Unauthenticated,
  Unavailable,
} from "@jobbroker/client";
import { ErrorInfoSchema } from "@jobbroker/client/gen/google/rpc/error_details_pb";
import { StatusSchema } from "@jobbroker/client/gen/google/rpc/status_pb";
import { ErrorReason } from "@jobbroker/client/gen/jobbroker/v1/error_reason_pb";

const reasons = Object.keys(ErrorReason).filter((key) => Number.isNaN(Number(key)) && key !== "UNSPECIFIED");

describe("errors", () => {
  it("maps every reason of the generated enum to a class of its own kind", () => {
    assert.ok(reasons.length >= 19);
    for (const reason of reasons) {
      const cls = errorClassFor(reason);
      assert.ok(cls, `no class for ${reason}`);
      const error = errorFromReason(status.FAILED_PRECONDITION, reason, "m");
      assert.ok(error instanceof JobBrokerError);
      assert.notEqual(error.constructor, JobBrokerError, reason);
      assert.equal(error.reason, reason);
    }
    assert.equal(errorClassFor("LEASE_EXPIRED"), LeaseExpired);
    assert.equal(errorClassFor("REDIS_UNAVAILABLE"), RedisUnavailable);
    assert.equal(errorClassFor("SHUTTING_DOWN"), ShuttingDown);
    assert.equal(errorClassFor("TOKEN_REVOKED"), Unauthenticated);
    assert.equal(errorClassFor("toString"), undefined);
  });

  it("falls back on the status code when the reason is unknown or missing", () => {
    assert.ok(errorFromReason(status.UNAVAILABLE, "", "down") instanceof Unavailable);
    assert.ok(errorFromReason(status.NOT_FOUND, "SOMETHING_NEW", "x") instanceof JobNotFound);
    assert.ok(errorFromReason(status.PERMISSION_DENIED, "", "x") instanceof PermissionDenied);
    const plain = errorFromReason(status.INTERNAL, "", "boom");
    assert.equal(plain.constructor, JobBrokerError);
    assert.equal(plain.code, status.INTERNAL);
  });

  it("reads the ErrorInfo of the grpc-status-details-bin trailer", () => {
    const info = create(ErrorInfoSchema, { reason: "INVALID_FIELD", domain: "jobbroker.v1", metadata: { field: "options.priority" } });
    const details = create(StatusSchema, { code: status.INVALID_ARGUMENT, message: "bad", details: [anyPack(ErrorInfoSchema, info)] });
    const trailers = new Metadata();
    trailers.set("grpc-status-details-bin", Buffer.from(toBinary(StatusSchema, details)));
    const serviceError = Object.assign(new Error("3 INVALID_ARGUMENT: bad"), { code: status.INVALID_ARGUMENT, details: "bad", metadata: trailers });
    const error = fromServiceError(serviceError);
    assert.ok(error instanceof InvalidArgument);
    assert.equal(error.message, "bad");
    assert.equal(error.field, "options.priority");
    assert.equal(error.cause, serviceError);
  });
});
