/**
 * The etcd store over etcd's v3 JSON gateway (`POST /v3/kv/range`, `/v3/kv/txn`) with
 * `fetch`: what `ohno ipam` uses, so the admin CLI loads no gRPC client (npm etcd3 and
 * grpc-js through Deno's Node layer cost about 250 ms a command). Same Store contract,
 * same timeouts and the same words for failures as the gRPC store (ipam/etcd.ts), which
 * the node agent keeps for its watches (HTTP/2 keepalive pings find a dead connection
 * under a watch that is quiet; a fetch stream has no such ping).
 *
 * - Timeouts: until an endpoint has answered once, a request waits at most the dial
 *   timeout (a port that accepts and says nothing fails there, named); after that, the
 *   request timeout.
 * - Endpoints are tried in order, starting with the last one that answered; a request
 *   moves on to the next only when its connection failed (refused, TLS), never after it
 *   may have reached etcd.
 * - TLS: the CA, client certificate and key through `Deno.createHttpClient`; the name is
 *   the endpoint's host (a DNS name against the certificate's DNS names, an IP address
 *   against its IP addresses). `fetch` cannot check another name, so a `serverName`
 *   other than the endpoint's host is the gRPC store's (daemon/datastore.ts).
 * @module
 */

import {
  DIAL_TIMEOUT_MS,
  etcdTxn,
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
} from "./store.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function b64(x: string | Uint8Array): string {
  const bytes = typeof x === "string" ? enc.encode(x) : x;
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

function bytesOf(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function unb64(s: string | undefined): string {
  if (!s) return "";
  const bin = atob(s);
  // ASCII (every key, nearly every value) is its own UTF-8: no decoder call per string.
  if (!/[\x80-\xff]/.test(bin)) return bin;
  return dec.decode(bytesOf(s));
}

interface GatewayKv {
  key: string;
  value?: string;
  create_revision?: string;
  mod_revision?: string;
}

function toKv(k: GatewayKv): KV {
  return {
    key: unb64(k.key),
    value: unb64(k.value),
    createRevision: Number(k.create_revision ?? 0),
    modRevision: Number(k.mod_revision ?? 0),
  };
}

export interface EtcdHttpOptions {
  endpoints: string[];
  /** PEM file paths; all three for mutual TLS. */
  ca?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
  dialTimeoutMs?: number;
  requestTimeoutMs?: number;
  /** Keys per page of a list (default {@link LIST_PAGE}). */
  pageSize?: number;
}

/** gRPC status codes etcd gives a request it refuses (the request is wrong, etcd is fine). */
const REQUEST_CODES = new Set([3, 5, 6, 8, 9, 11, 12]);

/** A failure of the way to etcd, with what it is in words (the transport's own words last). */
class Transport extends Error {
  constructor(readonly why: string, readonly endpoint: string, readonly beforeSend: boolean) {
    super(why);
  }
}

export class EtcdHttpStore implements Store {
  readonly kind = "etcd";
  readonly location: string;
  readonly dialTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly pageSize: number;
  readonly #client: Deno.HttpClient | undefined;
  readonly #tls: { ca?: string | undefined; cert?: string | undefined } | undefined;
  /** Endpoints that have answered (their requests get the request timeout). */
  readonly #answered = new Set<string>();
  /** The endpoint tried first: the last that answered. */
  #first = 0;

  constructor(readonly options: EtcdHttpOptions) {
    if (options.endpoints.length === 0) throw new TypeError("etcd: no endpoints given");
    this.location = options.endpoints.join(",");
    this.dialTimeoutMs = options.dialTimeoutMs ?? DIAL_TIMEOUT_MS;
    this.requestTimeoutMs = options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
    this.pageSize = options.pageSize ?? LIST_PAGE;
    const ca = readTlsFile(options.ca, "CA certificate");
    const cert = readTlsFile(options.cert, "client certificate");
    const key = readTlsFile(options.key, "client key");
    const secure = !!ca || options.endpoints.some((e) => e.startsWith("https:"));
    if (secure) this.#tls = { ca: options.ca, cert: options.cert };
    if (ca || cert || key) {
      this.#client = Deno.createHttpClient({
        ...(ca ? { caCerts: [ca] } : {}),
        ...(cert && key ? { cert, key } : {}),
      } as Deno.CreateHttpClientOptions);
    }
  }

  /**
   * One gateway call: the endpoints in turn while their connection fails, each with its
   * timeout; a refusal by etcd is StoreRequestError, the rest StoreUnavailableError.
   */
  async #call<T>(what: string, path: string, body: unknown): Promise<T> {
    const eps = this.options.endpoints;
    let last: Transport | undefined;
    for (let n = 0; n < eps.length; n++) {
      const i = (this.#first + n) % eps.length;
      const ep = eps[i]!.replace(/\/+$/, "");
      try {
        const out = await this.#post<T>(ep, path, body);
        this.#first = i;
        return out;
      } catch (e) {
        if (!(e instanceof Transport)) {
          throw new StoreRequestError(
            `etcd at ${this.location} refused the request (${what}): ${(e as Error).message}`,
            { cause: e },
          );
        }
        last = e;
        if (!e.beforeSend) break;
      }
    }
    const dial = last!.why.includes("(dial timeout");
    throw new StoreUnavailableError(
      `etcd at ${dial ? last!.endpoint : this.location} is unavailable (${what}): ${last!.why}`,
      { cause: last },
    );
  }

  async #post<T>(ep: string, path: string, body: unknown): Promise<T> {
    const dialing = !this.#answered.has(ep);
    const ms = dialing ? this.dialTimeoutMs : this.requestTimeoutMs;
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), ms);
    let res: Response;
    let text: string;
    try {
      res = await fetch(`${ep}${path}`, {
        method: "POST",
        body: JSON.stringify(body),
        headers: { "content-type": "application/json" },
        signal: ctl.signal,
        ...(this.#client ? { client: this.#client } : {}),
      });
      text = await res.text();
    } catch (e) {
      if (ctl.signal.aborted) {
        throw new Transport(
          dialing
            ? `it did not answer within ${
              ms / 1000
            } s (dial timeout: no connection that etcd answers)`
            : `it did not answer within ${ms / 1000} s (request timeout)`,
          ep,
          false,
        );
      }
      const why = this.#describe(e);
      throw new Transport(why, ep, this.#connectFailure(e));
    } finally {
      clearTimeout(timer);
    }
    this.#answered.add(ep);
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(text);
    } catch {
      throw new Transport(
        `it answered HTTP ${res.status} with something that is not etcd's JSON: ` +
          JSON.stringify(text.slice(0, 80)),
        ep,
        false,
      );
    }
    if (!res.ok || "error" in json) {
      const code = Number(json.code ?? 0);
      const msg = String(json.message ?? json.error ?? `HTTP ${res.status}`);
      if (REQUEST_CODES.has(code)) throw new Error(msg);
      throw new Transport(msg, ep, false);
    }
    return json as T;
  }

  /** Whether a fetch error happened before the request could reach etcd. */
  #connectFailure(e: unknown): boolean {
    const m = causeText(e);
    return /\(Connect\)|Connection refused|tls handshake|invalid peer certificate|dns error/i
      .test(m);
  }

  /** Why a request failed, in the gRPC store's words (ipam/etcd.ts). */
  #describe(e: unknown): string {
    const m = causeText(e);
    const why = m.replace(/^error sending request.*?: client error \(\w+\): /s, "");
    if (/Connection refused/i.test(m)) return "connection refused";
    const tls = this.#tls;
    if (!tls) {
      if (/connection closed|connection reset/i.test(m)) {
        return `the connection was closed before etcd answered (${why}); ` +
          `if etcd serves TLS, use an https:// endpoint and --etcd-ca`;
      }
      return why;
    }
    const names =
      /certificate not valid for name "([^"]*)"; certificate is (?:only )?valid for (.*)$/s
        .exec(why);
    if (names) {
      const listed = [...names[2]!.matchAll(/(DnsName|IpAddress)\(\"?([^")]*)\"?\)/g)]
        .map((x) => `${x[1] === "DnsName" ? "DNS" : "IP"}:${x[2]}`).join(", ");
      return `TLS: etcd's certificate names ${listed || names[2]}, not ${names[1]} ` +
        `(use an endpoint it names, or set datastore.etcd.serverName)`;
    }
    if (/UnknownIssuer|BadSignature|self[- ]signed/i.test(why)) {
      return `TLS: etcd's certificate is not signed by ${
        tls.ca ? `the CA in ${tls.ca}` : "a CA this host trusts (give etcd's CA with --etcd-ca)"
      } (${why})`;
    }
    if (/tls handshake eof|InvalidContentType|CorruptMessage/i.test(why)) {
      return `TLS: the connection closed before the TLS handshake finished: if etcd serves ` +
        `plain HTTP, use an http:// endpoint (${why})`;
    }
    // etcd refuses a missing or untrusted client certificate after the handshake: the
    // client sees only the closed connection.
    if (/connection closed|connection reset|broken pipe|alert/i.test(m)) {
      return tls.cert
        ? `TLS: etcd closed the connection during the handshake: it did not accept the ` +
          `client certificate ${tls.cert} (not signed by a CA etcd trusts, or not for client auth)`
        : `TLS: etcd closed the connection during the handshake: it demands a client ` +
          `certificate (give --etcd-cert and --etcd-key)`;
    }
    return `TLS: ${why}`;
  }

  async get(key: string): Promise<KV | undefined> {
    const r = await this.#call<{ kvs?: GatewayKv[] }>("get", "/v3/kv/range", { key: b64(key) });
    const k = r.kvs?.[0];
    return k ? toKv(k) : undefined;
  }

  /** In pages of {@link LIST_PAGE} keys, one snapshot (etcdcommon.ts). */
  list(prefix: string): Promise<KV[]> {
    const end = b64(prefixEnd(prefix));
    return listInPages(prefix, async (from, revision) => {
      const r = await this.#call<
        { kvs?: GatewayKv[]; more?: boolean; header: { revision: string } }
      >("list", "/v3/kv/range", {
        key: b64(from),
        range_end: end,
        sort_order: "ASCEND",
        sort_target: "KEY",
        limit: String(this.pageSize),
        ...(revision ? { revision } : {}),
      });
      const kvs = r.kvs ?? [];
      const last = kvs.at(-1);
      return {
        rows: kvs.map(toKv),
        more: r.more === true,
        revision: r.header.revision,
        lastKey: last ? bytesOf(last.key) : undefined,
      };
    });
  }

  async revision(): Promise<number> {
    const r = await this.#call<{ header: { revision: string } }>("revision", "/v3/kv/range", {
      key: b64("/ohno/"),
      count_only: true,
    });
    return Number(r.header.revision);
  }

  async commit(txn: Txn): Promise<CommitResult> {
    const { compare, success } = etcdTxn(txn, b64, (name) => name.toUpperCase());
    const r = await this.#call<{ succeeded?: boolean; header: { revision: string } }>(
      "commit",
      "/v3/kv/txn",
      { compare, success },
    );
    return { ok: r.succeeded === true, revision: Number(r.header.revision) };
  }

  close(): Promise<void> {
    this.#client?.close();
    return Promise.resolve();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** A fetch error's text with its causes (Deno puts the transport's words in the cause). */
function causeText(e: unknown): string {
  const parts: string[] = [];
  for (let x = e as { message?: string; cause?: unknown } | undefined, n = 0; x && n < 5; n++) {
    if (x.message) parts.push(x.message);
    x = x.cause as typeof x;
  }
  const inner = parts.at(-1) ?? String(e);
  return inner;
}
