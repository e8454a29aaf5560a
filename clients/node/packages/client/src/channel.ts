// Where and how to connect: one or several broker addresses, TLS or mutual TLS, the API token.

import { readFileSync } from "node:fs";
import { isIP } from "node:net";

import * as grpc from "@grpc/grpc-js";

export const DEFAULT_ADDRESS = "127.0.0.1:50051";

/** The broker's own message size limit; gRPC's default (4 MiB) is too small for bulk adds. */
const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

/** TLS settings: PEM file paths, or the PEM contents. */
export interface TlsOptions {
  /** The CA that signed the broker's certificate (default: the system's roots). */
  ca?: string | Buffer;
  /** This client's certificate, for mutual TLS (give `key` too). */
  cert?: string | Buffer;
  /** This client's private key, for mutual TLS. */
  key?: string | Buffer;
  /** Check the broker's certificate against this name instead of the address' host. */
  serverName?: string;
}

/** How to reach the broker; shared by `Client` and `Worker`. */
export interface ConnectionOptions {
  /**
   * `host:port`, any gRPC target (`dns:///brokers:50051`), or several IP `host:port` addresses
   * (an array, or one string separated by commas): calls are spread round robin over the
   * brokers that answer. Default `127.0.0.1:50051`.
   */
  address?: string | readonly string[];
  /** An API token (`jobbroker token create`), sent as `authorization: Bearer <token>`. */
  token?: string;
  /** TLS: `true` for the system's roots, or the CA and (mutual TLS) client certificate. */
  tls?: boolean | TlsOptions;
  /** Extra grpc-js channel options (they override ours). */
  channelOptions?: grpc.ChannelOptions;
}

/**
 * The gRPC target for one address or several IP `host:port` addresses, which become one
 * `ipv4:`/`ipv6:` target balanced round robin (as the Python client does).
 */
export function target(address: string | readonly string[]): string {
  let list: string[];
  if (typeof address === "string") {
    if (!address.includes(",") || address.includes(":///") || /^ipv[46]:/.test(address)) {
      return address;
    }
    list = address.split(",");
  } else {
    list = [...address];
  }
  const addresses = list.map((a) => a.trim()).filter((a) => a !== "");
  if (addresses.length === 0) throw new Error("address: give at least one broker address");
  if (addresses.length === 1) return addresses[0] as string;
  const versions = new Set(addresses.map(ipVersion));
  if (versions.size > 1) throw new Error("address: do not mix IPv4 and IPv6 addresses in one list");
  return `ipv${[...versions][0]}:${addresses.join(",")}`;
}

function ipVersion(address: string): number {
  const colon = address.lastIndexOf(":");
  const host = address.slice(0, colon).replace(/^\[/, "").replace(/\]$/, "");
  const port = address.slice(colon + 1);
  const version = colon > 0 ? isIP(host) : 0;
  if (version === 0 || !/^\d+$/.test(port)) {
    throw new Error(
      `address: ${JSON.stringify(address)} is not an IP:port address; a list of brokers must ` +
        "name IP addresses (for host names give one DNS name: calls are spread over its addresses)",
    );
  }
  return version;
}

function pem(value: string | Buffer | undefined): Buffer | null {
  if (value === undefined) return null;
  if (Buffer.isBuffer(value)) return value;
  return value.includes("-----BEGIN") ? Buffer.from(value) : readFileSync(value);
}

/** Channel credentials: plaintext, or TLS with the given CA and client certificate. */
export function credentials(tls: ConnectionOptions["tls"]): grpc.ChannelCredentials {
  if (!tls) return grpc.credentials.createInsecure();
  const options: TlsOptions = tls === true ? {} : tls;
  if ((options.cert === undefined) !== (options.key === undefined)) {
    throw new Error("tls: give both a client certificate and its key, or neither");
  }
  return grpc.credentials.createSsl(pem(options.ca), pem(options.key), pem(options.cert));
}

/** Our channel options, overridden by the caller's. */
export function channelOptions(connection: ConnectionOptions): grpc.ChannelOptions {
  const serverName = typeof connection.tls === "object" ? connection.tls.serverName : undefined;
  return {
    // Spread calls over every address the target resolves to (or lists).
    "grpc.service_config": JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] }),
    // gRPC waits 1 s, then up to 120 s, between reconnection attempts; a broker restarting
    // in a second would keep failing our retries long after it is back.
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 1_000,
    "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    // A connection that died silently (a NAT or load balancer dropped it) would hold a stream
    // or a long poll until TCP gives up: ping every 20 s while calls are open, and drop the
    // connection when a ping goes unanswered for 10 s (as the Python client; the broker
    // accepts pings this often).
    "grpc.keepalive_time_ms": 20_000,
    "grpc.keepalive_timeout_ms": 10_000,
    ...(serverName ? { "grpc.ssl_target_name_override": serverName } : {}),
    ...connection.channelOptions,
  };
}

/** The grpc-js client (one channel) for a connection. */
export function openChannel(connection: ConnectionOptions): grpc.Client {
  return new grpc.Client(
    target(connection.address ?? DEFAULT_ADDRESS),
    credentials(connection.tls),
    channelOptions(connection),
  );
}

/** The metadata every call carries: the API token, when there is one. */
export function baseMetadata(token: string | undefined): () => grpc.Metadata {
  return () => {
    const metadata = new grpc.Metadata();
    if (token) metadata.set("authorization", `Bearer ${token}`);
    return metadata;
  };
}
