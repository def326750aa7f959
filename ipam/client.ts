/**
 * The plugin's client of the node agent's IPAM socket (see ipam/protocol.ts).
 *
 * Every call is bounded: a missing socket, a refused connection or an agent that does
 * not answer within the timeout (default 2 s) is {@link AgentUnavailableError}, which the
 * CNI face reports as error 11 (try again later).
 * @module
 */

import type {
  AllocateRequest,
  AllocateResponse,
  CheckRequest,
  CheckResponse,
  ErrorBody,
  ErrorKind,
  GcRequest,
  GcResponse,
  ReleaseRequest,
  ReleaseResponse,
  StatusResponse,
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

export interface AgentClientOptions {
  /** Per-request limit in milliseconds (default 2000). */
  timeoutMs?: number;
}

export class AgentClient implements Disposable {
  readonly #client: Deno.HttpClient;
  readonly #timeoutMs: number;

  constructor(readonly socket: string, opts: AgentClientOptions = {}) {
    this.#client = Deno.createHttpClient({ proxy: { transport: "unix", path: socket } });
    this.#timeoutMs = opts.timeoutMs ?? 2000;
  }

  allocate(req: AllocateRequest): Promise<AllocateResponse> {
    return this.#call("POST", "/v1/allocate", req);
  }

  release(req: ReleaseRequest): Promise<ReleaseResponse> {
    return this.#call("POST", "/v1/release", req);
  }

  check(req: CheckRequest): Promise<CheckResponse> {
    return this.#call("POST", "/v1/check", req);
  }

  gc(req: GcRequest): Promise<GcResponse> {
    return this.#call("POST", "/v1/gc", req);
  }

  status(): Promise<StatusResponse> {
    return this.#call("GET", "/v1/status");
  }

  async #call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const signal = AbortSignal.timeout(this.#timeoutMs);
    let res: Response;
    let text: string;
    try {
      // An IP literal as host: Deno resolves the URL's host name even when the request
      // goes to a unix socket, and a node whose DNS does not answer would stall every ADD.
      res = await fetch(`http://127.0.0.1${path}`, {
        method,
        client: this.#client,
        signal,
        ...(body !== undefined
          ? { body: JSON.stringify(body), headers: { "content-type": "application/json" } }
          : {}),
      });
      text = await res.text();
    } catch (e) {
      const why = signal.aborted ? `no answer within ${this.#timeoutMs} ms` : describeFetchError(e);
      throw new AgentUnavailableError(
        `the ohno node agent at ${this.socket} is unreachable: ${why}`,
        { cause: e },
      );
    }
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
    if (!res.ok) {
      const err = (doc as Partial<ErrorBody>).error;
      throw new AgentError(
        err?.kind ?? "internal",
        err?.message ?? `the agent answered ${res.status}`,
        res.status,
      );
    }
    return doc as T;
  }

  [Symbol.dispose](): void {
    this.#client.close();
  }

  close(): void {
    this.#client.close();
  }
}

function describeFetchError(e: unknown): string {
  const msg = String((e as Error)?.cause ?? (e as Error)?.message ?? e);
  if (/No such file/i.test(msg)) return "the socket does not exist (is `ohno daemon` running?)";
  if (/refused/i.test(msg)) return "connection refused (is `ohno daemon` running?)";
  if (/permission/i.test(msg)) return "permission denied on the socket";
  return msg.replace(/^Error: /, "");
}
