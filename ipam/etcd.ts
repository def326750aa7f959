/**
 * The etcd store: the Store seam on etcd v3 (npm:etcd3, gRPC). Every commit is one etcd
 * transaction whose compares guard its writes, so two writers can never both win; a
 * watch streams changes from a revision. Loaded only by the node agent and the admin
 * CLI (lazy import), never in CNI mode.
 *
 * Failure is bounded: connecting gives up after `dialTimeoutMs`, every call after
 * `requestTimeoutMs`, and then a per-host circuit breaker fails further calls at once
 * for 5 s before trying again — so an agent with etcd down answers "try again later"
 * quickly instead of piling up requests. Only transport failures (etcd unreachable, no
 * answer in time) count toward the breaker and are retried: an error etcd gives to one
 * request (too large, invalid) is that request's {@link StoreRequestError}, and every
 * other client of the store carries on.
 * @module
 */

import { circuitBreaker, ConsecutiveBreaker, handleWhen, retry } from "cockatiel";
import {
  Etcd3,
  EtcdError,
  GRPCAlreadyExistsError,
  GRPCDeadlineExceededError,
  GRPCFailedPreconditionError,
  GRPCInvalidArgumentError,
  GRPCNotFoundError,
  GRPCNotImplementedError,
  GRPCOutOfRangeError,
  GRPCResourceExhastedError,
  GRPCUnavailableError,
  type IOptions,
} from "etcd3";
import type { Buffer } from "node:buffer";
import {
  type CommitResult,
  type KV,
  type Store,
  StoreRequestError,
  StoreUnavailableError,
  type Txn,
  type WatchEvent,
  type WatchOptions,
} from "./store.ts";

export interface EtcdOptions {
  endpoints: string[];
  /** PEM file paths; all three for mutual TLS (kubeadm's `healthcheck-client` pair works). */
  ca?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
  /**
   * The name the server certificate is checked against. Default: the endpoint's host,
   * or `localhost` when that is an IP address (Deno's TLS takes no IP as server name;
   * kubeadm's etcd certificates name `localhost`).
   */
  serverName?: string | undefined;
  /** Default 3000 ms. */
  dialTimeoutMs?: number;
  /** Default 5000 ms. */
  requestTimeoutMs?: number;
}

/**
 * A failure of the way to etcd, not of one request: etcd unreachable (refused, TLS,
 * dropped) or no answer in time. Only these open the circuit breaker and are retried.
 */
export function isTransportFailure(e: unknown): boolean {
  return e instanceof GRPCUnavailableError || e instanceof GRPCDeadlineExceededError;
}

/** etcd3's fault handling, with the breaker and the retries kept to transport failures. */
const faultHandling = {
  host: () =>
    circuitBreaker(handleWhen(isTransportFailure), {
      halfOpenAfter: 5000,
      breaker: new ConsecutiveBreaker(3),
    }),
  global: retry(handleWhen(isTransportFailure), { maxAttempts: 3 }),
};

const enc = new TextEncoder();
const dec = new TextDecoder();

/** The key after every key with this prefix (etcd's range_end for a prefix). */
export function prefixEnd(prefix: string): Uint8Array {
  const b = enc.encode(prefix);
  for (let i = b.length - 1; i >= 0; i--) {
    if (b[i]! < 0xff) {
      const out = b.slice(0, i + 1);
      out[i]!++;
      return out;
    }
  }
  return new Uint8Array([0]);
}

function buf(b: Uint8Array | string): Buffer {
  // etcd3 wants node Buffers; Deno's node compat provides the global.
  const B = (globalThis as unknown as { Buffer: typeof Buffer }).Buffer;
  return B.from(typeof b === "string" ? enc.encode(b) : b);
}

interface RawKv {
  key: Uint8Array;
  value: Uint8Array;
  create_revision: string;
  mod_revision: string;
}

function toKv(k: RawKv): KV {
  return {
    key: dec.decode(k.key),
    value: dec.decode(k.value),
    createRevision: Number(k.create_revision),
    modRevision: Number(k.mod_revision),
  };
}

export class EtcdStore implements Store {
  readonly kind = "etcd";
  readonly location: string;
  readonly #client: Etcd3;
  readonly #timeout: number;

  constructor(readonly options: EtcdOptions) {
    if (options.endpoints.length === 0) throw new TypeError("etcd: no endpoints given");
    this.location = options.endpoints.join(",");
    this.#timeout = options.requestTimeoutMs ?? 5000;
    const read = (p: string | undefined, what: string) => {
      if (!p) return undefined;
      try {
        return buf(Deno.readFileSync(p));
      } catch (e) {
        throw new StoreUnavailableError(
          `etcd: cannot read the ${what} ${p}: ${(e as Error).message}`,
        );
      }
    };
    const ca = read(options.ca, "CA certificate");
    const cert = read(options.cert, "client certificate");
    const key = read(options.key, "client key");
    const opts: IOptions = {
      hosts: options.endpoints,
      dialTimeout: options.dialTimeoutMs ?? 3000,
      defaultCallOptions: () => ({ deadline: new Date(Date.now() + this.#timeout) }),
      faultHandling,
    };
    if (ca) {
      const host = new URL(options.endpoints[0]!).hostname.replace(/^\[|\]$/g, "");
      const isIp = /^[\d.]+$/.test(host) || host.includes(":");
      const serverName = options.serverName ?? (isIp ? "localhost" : host);
      opts.grpcOptions = { "grpc.ssl_target_name_override": serverName };
      opts.credentials = {
        rootCertificate: ca,
        ...(cert ? { certChain: cert } : {}),
        ...(key ? { privateKey: key } : {}),
      };
    }
    this.#client = new Etcd3(opts);
  }

  /**
   * Runs an etcd call, turning transport failures into StoreUnavailableError and an
   * error etcd answered this one request with into StoreRequestError.
   */
  async #call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (isRequestError(e)) {
        throw new StoreRequestError(
          `etcd at ${this.location} refused the request (${what}): ${describe(e)}`,
          { cause: e },
        );
      }
      throw new StoreUnavailableError(
        `etcd at ${this.location} is unavailable (${what}): ${describe(e)}`,
        { cause: e },
      );
    }
  }

  async get(key: string): Promise<KV | undefined> {
    const r = await this.#call("get", () => this.#client.kv.range({ key: buf(key) }));
    const k = r.kvs[0];
    return k ? toKv(k as RawKv) : undefined;
  }

  async list(prefix: string): Promise<KV[]> {
    const r = await this.#call("list", () =>
      this.#client.kv.range({
        key: buf(prefix),
        range_end: buf(prefixEnd(prefix)),
        sort_order: "Ascend",
        sort_target: "Key",
      }));
    return r.kvs.map((k) => toKv(k as RawKv));
  }

  async revision(): Promise<number> {
    const r = await this.#call(
      "revision",
      () => this.#client.kv.range({ key: buf("/ohno/"), count_only: true }),
    );
    return Number(r.header.revision);
  }

  async commit(txn: Txn): Promise<CommitResult> {
    const compare = (txn.compare ?? []).map((c) => {
      if ("absent" in c) {
        return {
          key: buf(c.key),
          target: "Create" as const,
          result: "Equal" as const,
          create_revision: "0",
        };
      }
      if ("modRevision" in c) {
        return {
          key: buf(c.key),
          target: "Mod" as const,
          result: "Equal" as const,
          mod_revision: String(c.modRevision),
        };
      }
      return {
        key: buf(c.key),
        target: "Value" as const,
        result: "Equal" as const,
        value: buf(c.value),
      };
    });
    const success = txn.mutations.map((m) => {
      if ("put" in m) return { request_put: { key: buf(m.put), value: buf(m.value) } };
      if ("delete" in m) return { request_delete_range: { key: buf(m.delete) } };
      return {
        request_delete_range: {
          key: buf(m.deletePrefix),
          range_end: buf(prefixEnd(m.deletePrefix)),
        },
      };
    });
    const r = await this.#call(
      "commit",
      () => this.#client.kv.txn({ compare, success, failure: [] }),
    );
    return { ok: r.succeeded, revision: Number(r.header.revision) };
  }

  async *watch(prefix: string, opts: WatchOptions = {}): AsyncIterable<WatchEvent> {
    const pending: WatchEvent[] = [];
    let wake: (() => void) | undefined;
    let ended = false;
    const push = (e: WatchEvent) => {
      pending.push(e);
      wake?.();
    };
    let builder = this.#client.watch().prefix(prefix);
    if (opts.afterRevision !== undefined) {
      builder = builder.startRevision(String(opts.afterRevision + 1));
    }
    const watcher = await this.#call("watch", () => builder.create());
    watcher.on("data", (res) => {
      const r = res as unknown as {
        events: { type: string; kv: RawKv }[];
        header: { revision: string };
      };
      for (const ev of r.events) {
        if (ev.type === "Put") push({ type: "put", kv: toKv(ev.kv) });
        else {push({
            type: "delete",
            key: dec.decode(ev.kv.key),
            modRevision: Number(ev.kv.mod_revision),
          });}
      }
    });
    watcher.on("error", () => {
      // Compacted past our revision, or cancelled by etcd: the consumer must list again.
      push({ type: "reset", revision: 0 });
      ended = true;
    });
    const onAbort = () => wake?.();
    opts.signal?.addEventListener("abort", onAbort);
    try {
      while (!opts.signal?.aborted) {
        if (pending.length === 0) {
          if (ended) return;
          await new Promise<void>((r) => (wake = r));
          wake = undefined;
          continue;
        }
        const e = pending.shift()!;
        yield e;
        if (e.type === "reset") return;
      }
    } finally {
      opts.signal?.removeEventListener("abort", onAbort);
      await watcher.cancel().catch(() => {});
    }
  }

  close(): Promise<void> {
    this.#client.close();
    return Promise.resolve();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * An error etcd gave this request (a gRPC status other than the transport ones, or an
 * etcd error): the request is wrong, etcd is fine. Anything else (transport failures,
 * the open breaker, errors of unknown shape) counts as etcd unavailable.
 */
function isRequestError(e: unknown): boolean {
  return [
    GRPCInvalidArgumentError,
    GRPCResourceExhastedError,
    GRPCFailedPreconditionError,
    GRPCOutOfRangeError,
    GRPCNotFoundError,
    GRPCAlreadyExistsError,
    GRPCNotImplementedError,
    EtcdError,
  ].some((c) => e instanceof c);
}

function describe(e: unknown): string {
  const m = String((e as Error)?.message ?? e);
  if (/circuit breaker is open/i.test(m)) {
    return "recent calls failed; not retrying for a few seconds";
  }
  if (/ECONNREFUSED/.test(m)) return "connection refused";
  if (/DEADLINE_EXCEEDED|deadline/i.test(m)) return "no answer in time";
  if (/certificate|SSL|TLS|handshake/i.test(m)) return `TLS failed: ${m}`;
  return m.replace(/^\d+ [A-Z_]+: /, "");
}
