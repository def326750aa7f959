/**
 * A small Kubernetes API client on `fetch`: get, list, watch (streamed, from a
 * resourceVersion, with bookmarks), merge and strategic-merge patch, delete. Exactly what
 * the node agent needs, and no more; see docs/daemon.md for why ohno does not use
 * `@kubernetes/client-node`.
 *
 * - TLS with the cluster's CA and optional client certificate (`Deno.createHttpClient`);
 *   bearer tokens, re-read from their file as projected service-account tokens rotate.
 * - Every request but a watch is bounded by a timeout (default 10 s); a watch that brings
 *   nothing for `idleTimeoutMs` (default 120 s) is broken off as dead (half-open).
 * - Errors are {@link KubeApiError} with the HTTP status, the `Status` reason and the
 *   server's `Retry-After`;
 *   `410 Gone` (too old resourceVersion) is {@link KubeGoneError}, whether it comes as
 *   an HTTP status or as a watch `ERROR` event.
 * @module
 */

import type { KubeConnection } from "./config.ts";
import { namedError } from "../../lib/errors.ts";

/** The metadata ohno reads from any object. */
export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** Any Kubernetes object (fields beyond metadata are the caller's to type). */
export interface KubeObject {
  metadata: ObjectMeta;
  [k: string]: unknown;
}

export interface ListResult<T> {
  items: T[];
  resourceVersion: string;
}

/** One event of a watch stream. */
export type WatchEvent<T> =
  | { type: "ADDED" | "MODIFIED" | "DELETED"; object: T }
  /** A progress mark: nothing changed up to this resourceVersion. */
  | { type: "BOOKMARK"; resourceVersion: string };

/** The API server answered with an error. */
export class KubeApiError extends namedError("KubeApiError") {
  constructor(
    message: string,
    readonly status: number,
    readonly reason: string,
    options?: ErrorOptions & {
      /** The server's `Retry-After` (429 Too Many Requests, 503), in ms. */
      retryAfterMs?: number | undefined;
    },
  ) {
    super(message, options);
    this.retryAfterMs = options?.retryAfterMs;
  }

  /** How long the server asked the client to wait before the next try, ms. */
  readonly retryAfterMs: number | undefined;

  /** 401 or 403: the agent's credentials or RBAC, which retrying does not fix. */
  get forbidden(): boolean {
    return this.status === 401 || this.status === 403;
  }
}

/** The resourceVersion asked for is too old (compacted): list again. */
export class KubeGoneError extends namedError("KubeGoneError", KubeApiError) {}

/** The API server could not be reached or did not answer in time. */
export class KubeUnavailableError extends namedError("KubeUnavailableError") {}

export interface KubeClientOptions {
  /** Per-request limit for everything but watches, ms (default 10 000). */
  timeoutMs?: number;
  /** Re-read a token file at most this often, ms (default 60 000). */
  tokenRefreshMs?: number;
  /** User-Agent (default `ohno`). */
  userAgent?: string;
}

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  contentType?: string;
  signal?: AbortSignal | undefined;
}

export interface WatchOptions {
  resourceVersion?: string;
  allowWatchBookmarks?: boolean;
  /** Server-side end of the stream (default 300 s); a client-side guard aborts 30 s later. */
  timeoutSeconds?: number;
  /**
   * A stream that brings nothing (no event, no bookmark) for this long is taken for dead:
   * a half-open connection (a peer or middlebox gone without a FIN) would otherwise hold
   * the watch until the guard. Default 120 s: the API server sends bookmarks about every
   * minute to watchers that allow them.
   */
  idleTimeoutMs?: number;
  /** Called once the server has accepted the watch (before any event). */
  onOpen?: () => void;
  fieldSelector?: string;
  labelSelector?: string;
  signal?: AbortSignal | undefined;
}

interface StatusBody {
  kind?: string;
  message?: string;
  reason?: string;
  code?: number;
}

/** A client of one API server. Close it (or `using`) to release its connection pool. */
export class KubeClient implements Disposable {
  readonly server: string;
  readonly #conn: KubeConnection;
  readonly #http: Deno.HttpClient | undefined;
  readonly #timeoutMs: number;
  readonly #tokenRefreshMs: number;
  readonly #ua: string;
  #token: { value: string | undefined; readAt: number } | undefined;

  constructor(conn: KubeConnection, opts: KubeClientOptions = {}) {
    this.#conn = conn;
    this.server = conn.server.replace(/\/+$/, "");
    this.#timeoutMs = opts.timeoutMs ?? 10_000;
    this.#tokenRefreshMs = opts.tokenRefreshMs ?? 60_000;
    this.#ua = opts.userAgent ?? "ohno";
    if (conn.caPem || conn.clientCertPem) {
      this.#http = Deno.createHttpClient({
        ...(conn.caPem ? { caCerts: [conn.caPem] } : {}),
        ...(conn.clientCertPem && conn.clientKeyPem
          ? { cert: conn.clientCertPem, key: conn.clientKeyPem }
          : {}),
      });
    }
  }

  /** GET one object. */
  get<T = KubeObject>(path: string, opts: RequestOptions = {}): Promise<T> {
    return this.request<T>("GET", path, opts);
  }

  /** GET a list: its items and the list's resourceVersion. */
  async list<T = KubeObject>(path: string, opts: RequestOptions = {}): Promise<ListResult<T>> {
    const r = await this.request<{ items?: T[]; metadata?: { resourceVersion?: string } }>(
      "GET",
      path,
      opts,
    );
    return { items: r.items ?? [], resourceVersion: r.metadata?.resourceVersion ?? "" };
  }

  /** PATCH with a JSON merge patch (`merge`) or a strategic merge patch (`strategic`). */
  patch<T = KubeObject>(
    path: string,
    body: unknown,
    type: "merge" | "strategic",
    opts: Omit<RequestOptions, "body" | "contentType"> = {},
  ): Promise<T> {
    return this.request<T>("PATCH", path, {
      ...opts,
      body,
      contentType: type === "merge"
        ? "application/merge-patch+json"
        : "application/strategic-merge-patch+json",
    });
  }

  delete<T = KubeObject>(path: string, opts: RequestOptions = {}): Promise<T> {
    return this.request<T>("DELETE", path, opts);
  }

  /** One request; JSON in and out. */
  async request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const signal = opts.signal
      ? AbortSignal.any([opts.signal, AbortSignal.timeout(this.#timeoutMs)])
      : AbortSignal.timeout(this.#timeoutMs);
    const res = await this.#fetch(method, path, opts, signal);
    let text: string;
    try {
      text = await res.text();
    } catch (e) {
      throw this.#unavailable(method, path, e);
    }
    if (!res.ok) throw errorOf(method, path, res.status, text, res.headers);
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new KubeApiError(
        `${method} ${path}: the answer is not JSON`,
        res.status,
        "BadResponse",
      );
    }
  }

  /**
   * Watches a collection (`/api/v1/nodes`) from `resourceVersion`. Yields events until
   * the server ends the stream (its `timeoutSeconds`), the signal aborts, or an error:
   * `KubeGoneError` when the resourceVersion is too old.
   */
  async *watch<T = KubeObject>(
    path: string,
    opts: WatchOptions = {},
  ): AsyncGenerator<WatchEvent<T>> {
    const timeoutSeconds = opts.timeoutSeconds ?? 300;
    const guard = AbortSignal.timeout((timeoutSeconds + 30) * 1000);
    const signal = opts.signal ? AbortSignal.any([opts.signal, guard]) : guard;
    const res = await this.#fetch("GET", path, {
      query: {
        watch: "true",
        resourceVersion: opts.resourceVersion || undefined,
        allowWatchBookmarks: opts.allowWatchBookmarks ? "true" : undefined,
        timeoutSeconds,
        fieldSelector: opts.fieldSelector,
        labelSelector: opts.labelSelector,
      },
    }, signal);
    if (!res.ok) {
      throw errorOf("WATCH", path, res.status, await res.text().catch(() => ""), res.headers);
    }
    opts.onOpen?.();
    if (!res.body) return;
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    const idleMs = opts.idleTimeoutMs ?? 120_000;
    let buf = "";
    try {
      while (true) {
        let chunk: ReadableStreamReadResult<string>;
        let idle: ReturnType<typeof setTimeout> | undefined;
        try {
          chunk = await Promise.race([
            reader.read(),
            new Promise<never>((_, reject) => {
              idle = setTimeout(
                () => reject(new KubeUnavailableError(`WATCH ${path}: nothing for ${idleMs} ms`)),
                idleMs,
              );
            }),
          ]);
        } catch (e) {
          if (opts.signal?.aborted) return;
          if (e instanceof KubeUnavailableError) throw e;
          throw this.#unavailable("WATCH", path, e);
        } finally {
          clearTimeout(idle);
        }
        if (chunk.done) break;
        buf += chunk.value;
        let nl: number;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (line) yield parseEvent<T>(path, line);
        }
      }
      if (buf.trim()) yield parseEvent<T>(path, buf.trim());
    } finally {
      await reader.cancel().catch(() => {});
    }
  }

  close(): void {
    this.#http?.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  async #fetch(
    method: string,
    path: string,
    opts: RequestOptions,
    signal: AbortSignal,
  ): Promise<Response> {
    const url = new URL(this.server + path);
    for (const [k, v] of Object.entries(opts.query ?? {})) {
      if (v !== undefined) url.searchParams.set(k, String(v));
    }
    const headers: Record<string, string> = {
      accept: "application/json",
      "user-agent": this.#ua,
    };
    const token = this.#bearer();
    if (token) headers.authorization = `Bearer ${token}`;
    if (opts.body !== undefined) headers["content-type"] = opts.contentType ?? "application/json";
    try {
      return await fetch(url, {
        method,
        headers,
        signal,
        ...(this.#http ? { client: this.#http } : {}),
        ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
      });
    } catch (e) {
      throw this.#unavailable(method, path, e);
    }
  }

  #bearer(): string | undefined {
    if (this.#conn.token) return this.#conn.token;
    const file = this.#conn.tokenFile;
    if (!file) return undefined;
    const now = Date.now();
    if (!this.#token || now - this.#token.readAt >= this.#tokenRefreshMs) {
      try {
        this.#token = { value: Deno.readTextFileSync(file).trim(), readAt: now };
      } catch {
        // Keep the last token we had; the server will say if it is no good.
        this.#token = { value: this.#token?.value, readAt: now };
      }
    }
    return this.#token.value;
  }

  #unavailable(method: string, path: string, e: unknown): KubeUnavailableError {
    const why = e instanceof DOMException && e.name === "TimeoutError"
      ? `no answer within ${this.#timeoutMs} ms`
      : (e as Error)?.message ?? String(e);
    return new KubeUnavailableError(`${method} ${this.server}${path}: ${why}`, { cause: e });
  }
}

/** `Retry-After` in ms: delay-seconds or an HTTP date; undefined when absent or unreadable. */
export function retryAfterMs(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

function errorOf(
  method: string,
  path: string,
  status: number,
  text: string,
  headers?: Headers,
): KubeApiError {
  let body: StatusBody = {};
  try {
    body = JSON.parse(text) as StatusBody;
  } catch {
    // not a Status
  }
  const reason = body.reason ?? `HTTP${status}`;
  const msg = `${method} ${path}: ${status} ${reason}: ${
    body.message ?? (text.trim() || "no message")
  }`;
  return status === 410
    ? new KubeGoneError(msg, status, reason)
    : new KubeApiError(msg, status, reason, {
      retryAfterMs: retryAfterMs(headers?.get("retry-after") ?? null),
    });
}

function parseEvent<T>(path: string, line: string): WatchEvent<T> {
  let e: { type?: string; object?: Record<string, unknown> };
  try {
    e = JSON.parse(line);
  } catch {
    throw new KubeApiError(`WATCH ${path}: a line of the stream is not JSON`, 200, "BadResponse");
  }
  const obj = e.object ?? {};
  switch (e.type) {
    case "ADDED":
    case "MODIFIED":
    case "DELETED":
      return { type: e.type, object: obj as T };
    case "BOOKMARK": {
      const meta = obj.metadata as { resourceVersion?: string } | undefined;
      return { type: "BOOKMARK", resourceVersion: meta?.resourceVersion ?? "" };
    }
    case "ERROR": {
      const s = obj as StatusBody;
      const code = s.code ?? 500;
      const msg = `WATCH ${path}: ${code} ${s.reason ?? ""}: ${s.message ?? "error event"}`;
      throw code === 410
        ? new KubeGoneError(msg, code, s.reason ?? "Expired")
        : new KubeApiError(msg, code, s.reason ?? "Error");
    }
    default:
      throw new KubeApiError(
        `WATCH ${path}: unknown event type ${JSON.stringify(e.type)}`,
        200,
        "BadResponse",
      );
  }
}
