/**
 * The plugin's client of the node agent's IPAM socket (see ipam/protocol.ts).
 *
 * Every call is bounded: a missing socket, a refused connection or an agent that does
 * not answer within the timeout (default 2 s; a whole CNI call, `cni`, 60 s) is
 * {@link AgentUnavailableError}, which the CNI face reports as error 11 (try again later).
 * Transport: one HTTP/1.1 request per call over the socket ({@link unixRequest}).
 * @module
 */

import { HttpProtocolError, unixRequest } from "./unixhttp.ts";
import {
  type AllocateRequest,
  type AllocateResponse,
  type CheckRequest,
  type CheckResponse,
  type CniRequest,
  type CniResponse,
  type ErrorBody,
  type ErrorKind,
  type GcRequest,
  type GcResponse,
  type Messages,
  type ReleaseRequest,
  type ReleaseResponse,
  ROUTES,
  type StatusResponse,
  type Verb,
} from "./protocol.ts";

/** The agent could not be reached or did not answer in time. */
export class AgentUnavailableError extends Error {
  override name = "AgentUnavailableError";
}

/** The agent answered with an error. */
export class AgentError extends Error {
  override name = "AgentError";
  constructor(readonly kind: ErrorKind, message: string, readonly status: number) {
    super(message);
  }
}

/** How a request reaches the agent: its status and body. */
export type AgentTransport = (
  method: string,
  path: string,
  body: string | undefined,
  signal: AbortSignal,
) => Promise<{ status: number; body: string }>;

export interface AgentClientOptions {
  /** Per-request limit in milliseconds (default 2000). */
  timeoutMs?: number;
  /**
   * Default: HTTP on the unix socket. The agent running a CNI call in-process hands in
   * its own request handler, so the call's IPAM goes through the same code, no socket.
   */
  transport?: AgentTransport;
}

/** How long the plugin waits for the agent to do a whole CNI call (`cni`). */
export const CNI_CALL_TIMEOUT_MS = 60_000;

export class AgentClient implements Disposable {
  readonly #timeoutMs: number;

  readonly #transport: AgentTransport;

  constructor(readonly socket: string, opts: AgentClientOptions = {}) {
    this.#timeoutMs = opts.timeoutMs ?? 2000;
    this.#transport = opts.transport ??
      ((method, path, body, signal) => unixRequest(this.socket, method, path, body, signal));
  }

  /** The whole CNI call done by the agent; waits up to {@link CNI_CALL_TIMEOUT_MS}. */
  cni(req: CniRequest): Promise<CniResponse> {
    return this.#call("cni", req, CNI_CALL_TIMEOUT_MS);
  }

  allocate(req: AllocateRequest): Promise<AllocateResponse> {
    return this.#call("allocate", req);
  }

  release(req: ReleaseRequest): Promise<ReleaseResponse> {
    return this.#call("release", req);
  }

  check(req: CheckRequest): Promise<CheckResponse> {
    return this.#call("check", req);
  }

  gc(req: GcRequest): Promise<GcResponse> {
    return this.#call("gc", req);
  }

  status(): Promise<StatusResponse> {
    return this.#call("status", undefined);
  }

  async #call<V extends Verb>(
    verb: V,
    body: Messages[V]["req"],
    timeoutMs = this.#timeoutMs,
  ): Promise<Messages[V]["res"]> {
    const { method, path } = ROUTES[verb];
    const signal = AbortSignal.timeout(timeoutMs);
    let res: { status: number; body: string };
    try {
      res = await this.#transport(
        method,
        path,
        body === undefined ? undefined : JSON.stringify(body),
        signal,
      );
    } catch (e) {
      const why = signal.aborted ? `no answer within ${timeoutMs} ms` : describeError(e);
      throw new AgentUnavailableError(
        `the ohno node agent at ${this.socket} is unreachable: ${why}`,
        { cause: e },
      );
    }
    const text = res.body;
    const ok = res.status >= 200 && res.status < 300;
    let doc: unknown;
    try {
      doc = text === "" ? {} : JSON.parse(text);
    } catch {
      throw new AgentError(
        "internal",
        `the agent answered ${res.status} with non-JSON`,
        res.status,
      );
    }
    if (!ok) {
      const err = (doc as Partial<ErrorBody>).error;
      throw new AgentError(
        err?.kind ?? "internal",
        err?.message ?? `the agent answered ${res.status}`,
        res.status,
      );
    }
    return doc as Messages[V]["res"];
  }

  /** Nothing to release (a connection per call); kept so callers can `using` a client. */
  [Symbol.dispose](): void {}

  close(): void {}
}

function describeError(e: unknown): string {
  if (e instanceof HttpProtocolError) return `it answered with broken HTTP: ${e.message}`;
  if (e instanceof Deno.errors.NotFound) {
    return "the socket does not exist (is `ohno daemon` running?)";
  }
  if (e instanceof Deno.errors.ConnectionRefused) {
    return "connection refused (is `ohno daemon` running?)";
  }
  if (e instanceof Deno.errors.PermissionDenied) return "permission denied on the socket";
  const msg = String((e as Error)?.message ?? e);
  if (/No such file/i.test(msg)) return "the socket does not exist (is `ohno daemon` running?)";
  if (/refused/i.test(msg)) return "connection refused (is `ohno daemon` running?)";
  if (/permission/i.test(msg)) return "permission denied on the socket";
  return msg.replace(/^Error: /, "");
}
