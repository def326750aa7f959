/**
 * The etcd store: the Store seam on etcd v3 (npm:etcd3, gRPC). Every commit is one etcd
 * transaction whose compares guard its writes, so two writers can never both win; a
 * watch streams changes from a revision. Loaded only by the node agent and the admin
 * CLI (lazy import), never in CNI mode.
 *
 * Failure is bounded: every call first waits at most `dialTimeoutMs` for a connection
 * that etcd answers (a port that accepts and then says nothing fails here), then at most
 * `requestTimeoutMs` for the answer, one deadline for etcd3's retries together; after
 * that etcd3's per-host circuit breaker fails further calls at once for 5 s before
 * trying again, so an agent with etcd down answers "try again later" quickly instead of
 * piling up requests. Only transport failures (etcd unreachable, no answer in time) count
 * toward the breaker and are retried: an error etcd gives to one request (too large,
 * invalid) is that request's {@link StoreRequestError}, and every other client of the
 * store carries on.
 *
 * TLS is checked per endpoint against the name it is reached by (or `serverName`): a
 * host name against the certificate's DNS names, an IP address against its IP
 * addresses. TLS failures are reported as what is wrong: the CA, the name, the client
 * certificate.
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
  RecoverableError,
} from "etcd3";
import * as grpc from "@grpc/grpc-js";
import { checkServerIdentity, type PeerCertificate } from "node:tls";
import type { Buffer } from "node:buffer";
import {
  DIAL_TIMEOUT_MS,
  etcdTxn,
  hostOf,
  LIST_PAGE,
  listInPages,
  prefixEnd,
  readTlsFile,
  REQUEST_TIMEOUT_MS,
} from "./etcdcommon.ts";
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
   * The name the server certificate is checked against, for every endpoint. Default:
   * each endpoint's host: a DNS name is checked against the certificate's DNS names, an
   * IP address against its IP addresses.
   */
  serverName?: string | undefined;
  /** Default {@link DIAL_TIMEOUT_MS}. */
  dialTimeoutMs?: number;
  /** Keys per page of a list (default {@link LIST_PAGE}). */
  pageSize?: number;
  /** Default {@link REQUEST_TIMEOUT_MS}. */
  requestTimeoutMs?: number;
}

/** How often an idle connection is pinged, so a dead one ends its watch streams. */
const KEEPALIVE_MS = 10_000;

/**
 * The SNI sent to an endpoint given by IP address: TLS carries no IP there (RFC 6066)
 * and Deno refuses one, while gRPC always sends some name. The certificate is still
 * checked against the IP address.
 */
const SNI_FOR_IP = "localhost";

/**
 * A failure of the way to etcd, not of one request: etcd unreachable (refused, TLS,
 * dropped), no connection it answers within the dial timeout, or no answer in time. Only these open the circuit breaker and are retried.
 */
export function isTransportFailure(e: unknown): boolean {
  return e instanceof GRPCUnavailableError || e instanceof GRPCDeadlineExceededError ||
    e instanceof DialTimeoutError;
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

/** A call found no connection that etcd answers within the dial timeout. */
class DialTimeoutError extends Error {
  // etcd3's circuit breaker counts only errors marked recoverable.
  readonly [RecoverableError] = true;
  constructor(readonly endpoint: string, readonly ms: number) {
    super(`${endpoint} did not answer`);
  }
}

/** What the TLS part of an endpoint is checked with. */
interface TlsMaterial {
  ca?: string | undefined;
  cert?: string | undefined;
}

/**
 * Etcd3 with access to its connection pool (protected in etcd3): to wait for a
 * connection, and to give each endpoint TLS credentials that check its own name.
 */
class Client extends Etcd3 {
  /** Waits until the connection etcd3 picks is up or has failed, at most `ms`. */
  dial(ms: number, endpointOf: (target: string) => string): Promise<void> {
    const deadline = Date.now() + ms;
    return this.pool.withConnection("KV", ({ client }) => {
      const channel = client.getChannel();
      const { READY, TRANSIENT_FAILURE, SHUTDOWN } = grpc.connectivityState;
      return new Promise<void>((resolve, reject) => {
        const check = () => {
          const state = channel.getConnectivityState(true);
          // A failed connection lets the call through: it fails at once, saying why.
          if (state === READY || state === TRANSIENT_FAILURE || state === SHUTDOWN) {
            return resolve();
          }
          channel.watchConnectivityState(state, deadline, (err) => {
            if (!err) return check();
            reject(new DialTimeoutError(endpointOf(channel.getTarget()), ms));
          });
        };
        check();
      });
    });
  }

  /**
   * Gives endpoint i the credentials and channel options `tls(i)` returns. etcd3 takes
   * one set of credentials for all endpoints and no way to check a server's name, so
   * this sets its hosts' (private) fields; etcd3 is pinned (deno.json), and a layout
   * it no longer has fails here, loudly, rather than connecting unchecked.
   */
  useTls(
    endpoints: string[],
    tls: (i: number) => { credentials: grpc.ChannelCredentials; options: grpc.ChannelOptions },
  ): void {
    const hosts = (this.pool as unknown as { hosts?: unknown }).hosts;
    type Host = { host: unknown; channelCredentials: unknown; channelOptions: unknown };
    const ok = Array.isArray(hosts) && hosts.length === endpoints.length &&
      hosts.every((h: Host, i) =>
        "channelCredentials" in h && h.host === endpoints[i]!.replace(/^https?:\/\//, "")
      );
    if (!ok) throw new Error("etcd3's connection pool is not laid out as ipam/etcd.ts expects");
    (hosts as Host[]).forEach((h, i) => {
      const t = tls(i);
      h.channelCredentials = t.credentials;
      h.channelOptions = { ...(h.channelOptions ?? {}), ...t.options };
    });
  }
}

const isIpAddress = (h: string) => /^[\d.]+$/.test(h) || h.includes(":");

const CERT_NAMES = "etcd's certificate names";

/** The names and addresses a certificate is for, as openssl prints them. */
function namesOf(cert: PeerCertificate): string {
  const alt = cert.subjectaltname?.replace(/IP Address:/g, "IP:");
  return alt || `only CN ${cert.subject?.CN ?? "(none)"}`;
}

export class EtcdStore implements Store {
  readonly kind = "etcd";
  readonly location: string;
  /** What each call waits for a connection, then for an answer (ms). */
  readonly dialTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly pageSize: number;
  readonly #client: Client;
  readonly #tls: TlsMaterial | undefined;
  /** Whether the last call was answered (then the next one skips the dial check). */
  #answered = false;

  constructor(readonly options: EtcdOptions) {
    if (options.endpoints.length === 0) throw new TypeError("etcd: no endpoints given");
    this.location = options.endpoints.join(",");
    this.dialTimeoutMs = options.dialTimeoutMs ?? DIAL_TIMEOUT_MS;
    this.requestTimeoutMs = options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
    this.pageSize = options.pageSize ?? LIST_PAGE;
    const read = (p: string | undefined, what: string) => {
      const pem = readTlsFile(p, what);
      return pem === undefined ? undefined : buf(pem);
    };
    const ca = read(options.ca, "CA certificate");
    const cert = read(options.cert, "client certificate");
    const key = read(options.key, "client key");
    const opts: IOptions = {
      hosts: options.endpoints,
      // Unary calls bring their own deadline (#call). A watch stream gets none: with a
      // deadline etcd3 ended and re-created every watch each `requestTimeoutMs`, a new
      // watch on etcd every 5 s from every agent. A dead connection is found by gRPC
      // keepalive instead (etcd accepts pings every 5 s or slower).
      defaultCallOptions: (ctx) =>
        ctx.isStream ? {} : { deadline: new Date(Date.now() + this.requestTimeoutMs) },
      grpcOptions: {
        "grpc.keepalive_time_ms": KEEPALIVE_MS,
        "grpc.keepalive_timeout_ms": KEEPALIVE_MS / 2,
      },
      faultHandling,
    };
    this.#client = new Client(opts);
    const secure = !!ca || options.endpoints.some((e) => e.startsWith("https:"));
    if (!secure) return;
    this.#tls = { ca: options.ca, cert: options.cert };
    this.#client.useTls(options.endpoints, (i) => {
      const expected = options.serverName ?? hostOf(options.endpoints[i]!);
      return {
        credentials: grpc.credentials.createSsl(ca ?? null, key ?? null, cert ?? null, {
          checkServerIdentity: (_sni, peer) =>
            checkServerIdentity(expected, peer) &&
            new Error(`${CERT_NAMES} ${namesOf(peer)}, not ${expected}`),
        }),
        options: { "grpc.ssl_target_name_override": isIpAddress(expected) ? SNI_FOR_IP : expected },
      };
    });
  }

  /**
   * Runs an etcd call: waits for a connection (dial timeout), then gives the call one
   * deadline (request timeout) for all of etcd3's attempts; failures become
   * StoreUnavailableError saying what is wrong.
   */
  async #call<T>(what: string, fn: (opts: grpc.CallOptions) => Promise<T>): Promise<T> {
    try {
      // After an answer the connection is known to be up: a call goes straight out (the
      // dial check costs about half a millisecond a call); a dead connection is then
      // found by the request timeout, and the next call dials again.
      if (!this.#answered) {
        await this.#client.dial(this.dialTimeoutMs, (t) => this.#endpointOf(t));
      }
      const out = await fn({ deadline: Date.now() + this.requestTimeoutMs });
      this.#answered = true;
      return out;
    } catch (e) {
      this.#answered = false;
      if (isRequestError(e)) {
        throw new StoreRequestError(
          `etcd at ${this.location} refused the request (${what}): ${this.#describe(e)}`,
          { cause: e },
        );
      }
      throw new StoreUnavailableError(
        `etcd at ${
          e instanceof DialTimeoutError ? e.endpoint : this.location
        } is unavailable (${what}): ${this.#describe(e)}`,
        { cause: e },
      );
    }
  }

  /** The endpoint URL a gRPC channel target ("dns:host:port") stands for. */
  #endpointOf(target: string): string {
    const hostPort = target.replace(/^dns:(\/\/\/)?/, "");
    return this.options.endpoints.find((e) => e.replace(/^https?:\/\//, "") === hostPort) ??
      hostPort;
  }

  /** Why a call failed, in words that say what to fix. */
  #describe(e: unknown): string {
    const ms = (n: number) => `${n / 1000} s`;
    if (e instanceof DialTimeoutError) {
      return `it did not answer within ${ms(e.ms)} (dial timeout: no connection that etcd ` +
        `answers)`;
    }
    const m = String((e as Error)?.message ?? e);
    if (/circuit breaker is open/i.test(m)) {
      return "recent calls failed; not retrying for a few seconds";
    }
    if (/DEADLINE_EXCEEDED|deadline exceeded/i.test(m)) {
      return `it did not answer within ${ms(this.requestTimeoutMs)} (request timeout)`;
    }
    if (/ECONNREFUSED/.test(m)) return "connection refused";
    // gRPC's "No connection established. Last error: <why> (<time>). Resolution note: …"
    const last = /Last error: (.*?)(?: \(\d{4}-\d\d-\d\dT[^)]*\))?\.?(?: Resolution note:.*)?$/s
      .exec(m);
    if (!last) return m.replace(/^\d+ [A-Z_]+: /, "");
    const why = last[1]!.replace(/^Error(?: \[\w+\])?: /, "");
    const tls = this.#tls;
    if (!tls) {
      if (/Failed to connect|Socket closed|ECONNRESET/.test(why)) {
        return `the connection was closed before etcd answered (${why}); ` +
          `if etcd serves TLS, use an https:// endpoint and --etcd-ca`;
      }
      return why;
    }
    if (why.startsWith(CERT_NAMES)) {
      return `TLS: ${why} (use an endpoint it names, or set datastore.etcd.serverName)`;
    }
    if (
      /unable to verify|self[- ]signed|local issuer|UnknownIssuer|certificate signature|BadSignature/i
        .test(why)
    ) {
      return `TLS: etcd's certificate is not signed by ${
        tls.ca ? `the CA in ${tls.ca}` : "a CA this host trusts (give etcd's CA with --etcd-ca)"
      } (${why})`;
    }
    // etcd refuses a missing or untrusted client certificate after the handshake: the
    // client sees its alert, or only the closed connection.
    const closed = /EPIPE|ECONNRESET|Socket closed|Failed to connect/;
    if (closed.test(why) || /alert.*(Certificate|UnknownCA|AccessDenied)/i.test(why)) {
      return tls.cert
        ? `TLS: etcd closed the connection during the handshake: it did not accept the ` +
          `client certificate ${tls.cert} (not signed by a CA etcd trusts, or not for client auth)`
        : `TLS: etcd closed the connection during the handshake: it demands a client ` +
          `certificate (give --etcd-cert and --etcd-key)`;
    }
    if (/before secure TLS connection|wrong version number|corrupt message/i.test(why)) {
      return `TLS: the connection closed before the TLS handshake finished: if etcd serves ` +
        `plain HTTP, use an http:// endpoint (${why})`;
    }
    return `TLS: ${why}`;
  }

  async get(key: string): Promise<KV | undefined> {
    const r = await this.#call("get", (o) => this.#client.kv.range({ key: buf(key) }, o));
    const k = r.kvs[0];
    return k ? toKv(k as RawKv) : undefined;
  }

  /** In pages of {@link LIST_PAGE} keys, one snapshot (etcdcommon.ts). */
  list(prefix: string): Promise<KV[]> {
    const end = buf(prefixEnd(prefix));
    return listInPages(prefix, async (from, revision) => {
      const r = await this.#call("list", (o) =>
        this.#client.kv.range({
          key: buf(from),
          range_end: end,
          sort_order: "Ascend",
          sort_target: "Key",
          limit: String(this.pageSize),
          ...(revision ? { revision } : {}),
        }, o));
      const kvs = r.kvs as unknown as RawKv[];
      return {
        rows: kvs.map(toKv),
        more: r.more,
        revision: r.header.revision,
        lastKey: kvs.at(-1)?.key,
      };
    });
  }

  async revision(): Promise<number> {
    const r = await this.#call(
      "revision",
      (o) => this.#client.kv.range({ key: buf("/ohno/"), count_only: true }, o),
    );
    return Number(r.header.revision);
  }

  async commit(txn: Txn): Promise<CommitResult> {
    // etcd3's own enum names; its typings want the literal types.
    type Req = Parameters<Etcd3["kv"]["txn"]>[0];
    const t = etcdTxn(txn, buf, (n) => n);
    const compare = t.compare as unknown as NonNullable<Req["compare"]>;
    const success = t.success as unknown as NonNullable<Req["success"]>;
    const r = await this.#call(
      "commit",
      (o) => this.#client.kv.txn({ compare, success, failure: [] }, o),
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
    const lost = () => {
      if (ended) return;
      push({ type: "reset", revision: 0 });
      ended = true;
    };
    // Compacted past our revision, or cancelled by etcd: the consumer must list again.
    watcher.on("error", lost);
    // The stream broke. etcd3 would re-create the watch by itself, but after a partition
    // during which etcd restarted it was seen never to come back (no connection, no
    // error, for minutes); and what happened meanwhile may be compacted. So the consumer
    // lists again and watches anew: one list per lost stream, and never a silent watch.
    watcher.on("disconnected", lost);
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
