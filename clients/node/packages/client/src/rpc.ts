// The generated service descriptors (protoc-gen-es) called over @grpc/grpc-js: one generic
// adapter instead of generated client classes, so every method of every service is typed from
// the same descriptors and serialized with the same generated message schemas.

import { fromBinary, toBinary } from "@bufbuild/protobuf";
import type { DescMessage, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { create } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";

type MethodOf<S extends GenServiceMethods, K extends keyof S> = S[K];
type In<M> = M extends { input: infer I extends DescMessage } ? I : never;
type Out<M> = M extends { output: infer O extends DescMessage } ? O : never;

/** Keys of the methods of one kind. */
export type MethodsOfKind<S extends GenServiceMethods, Kind extends string> = {
  [K in keyof S]: S[K]["methodKind"] extends Kind ? K : never;
}[keyof S];

/** A request as the caller may write it: the generated message, or a plain init object. */
export type RequestOf<S extends GenServiceMethods, K extends keyof S> = MessageInitShape<
  In<MethodOf<S, K>>
>;
/** The reply of a method, as the generated message type. */
export type ReplyOf<S extends GenServiceMethods, K extends keyof S> = MessageShape<
  Out<MethodOf<S, K>>
>;

/** Per-call settings of the adapter. */
export interface RpcCallOptions {
  /** When the call must be over (absolute, ms since the epoch); none: no deadline. */
  deadline?: number;
  /** Extra metadata sent with the call. */
  metadata?: grpc.Metadata;
}

interface Codec {
  path: string;
  serialize: (value: object) => Buffer;
  deserialize: (bytes: Buffer) => object;
  create: (init: object) => object;
}

/** One gRPC service of a channel, with typed methods from its generated descriptor. */
export class ServiceClient<S extends GenServiceMethods> {
  private readonly codecs = new Map<keyof S, Codec>();

  constructor(
    private readonly client: grpc.Client,
    service: GenService<S>,
    private readonly baseMetadata: () => grpc.Metadata,
  ) {
    for (const method of service.methods) {
      const input = method.input;
      const output = method.output;
      this.codecs.set(method.localName, {
        path: `/${service.typeName}/${method.name}`,
        serialize: (value) => Buffer.from(toBinary(input, value as MessageShape<typeof input>)),
        deserialize: (bytes) => fromBinary(output, bytes),
        create: (init) => create(input, init as MessageInitShape<typeof input>),
      });
    }
  }

  private codec(name: keyof S): Codec {
    const codec = this.codecs.get(name);
    if (codec === undefined) throw new Error(`no method ${String(name)} in this service`);
    return codec;
  }

  private metadata(options: RpcCallOptions): grpc.Metadata {
    const metadata = this.baseMetadata();
    if (options.metadata) metadata.merge(options.metadata);
    return metadata;
  }

  private static callOptions(options: RpcCallOptions): grpc.CallOptions {
    return options.deadline === undefined ? {} : { deadline: options.deadline };
  }

  /** A unary call; rejects with the grpc-js ServiceError. */
  unary<K extends MethodsOfKind<S, "unary">>(
    name: K,
    request: RequestOf<S, K>,
    options: RpcCallOptions = {},
    signal?: AbortSignal,
  ): Promise<ReplyOf<S, K>> {
    const codec = this.codec(name);
    return new Promise((resolve, reject) => {
      const call = this.client.makeUnaryRequest(
        codec.path,
        codec.serialize,
        codec.deserialize,
        codec.create(request),
        this.metadata(options),
        ServiceClient.callOptions(options),
        (error, reply) => {
          signal?.removeEventListener("abort", cancel);
          if (error) reject(error);
          else resolve(reply as ReplyOf<S, K>);
        },
      );
      const cancel = (): void => call.cancel();
      signal?.addEventListener("abort", cancel, { once: true });
      if (signal?.aborted) call.cancel();
    });
  }

  /** A server-streaming call: an async iterable of replies (cancel() ends it). */
  serverStream<K extends MethodsOfKind<S, "server_streaming">>(
    name: K,
    request: RequestOf<S, K>,
    options: RpcCallOptions = {},
  ): grpc.ClientReadableStream<ReplyOf<S, K>> {
    const codec = this.codec(name);
    return this.client.makeServerStreamRequest(
      codec.path,
      codec.serialize,
      codec.deserialize as (bytes: Buffer) => ReplyOf<S, K>,
      codec.create(request),
      this.metadata(options),
      ServiceClient.callOptions(options),
    );
  }

  /** A bidirectional stream; write generated messages (or init objects) to it. */
  bidi<K extends MethodsOfKind<S, "bidi_streaming">>(
    name: K,
    options: RpcCallOptions = {},
  ): grpc.ClientDuplexStream<RequestOf<S, K>, ReplyOf<S, K>> {
    const codec = this.codec(name);
    return this.client.makeBidiStreamRequest(
      codec.path,
      (value: RequestOf<S, K>) => codec.serialize(codec.create(value as object)),
      codec.deserialize as (bytes: Buffer) => ReplyOf<S, K>,
      this.metadata(options),
      ServiceClient.callOptions(options),
    );
  }
}
