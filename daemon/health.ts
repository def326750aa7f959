/**
 * The agent's HTTP endpoints for probes and scraping:
 *
 * - `GET /healthz`: 200 `ok` while the process is alive and every liveness check passes,
 *   else 503 naming the failing checks (a kubelet liveness probe restarts the agent);
 * - `GET /readyz`: 200 `ok` only once the agent said it is ready ({@link Health.setReady}:
 *   IPAM served, routes programmed), else 503 with the reason;
 * - `GET /metrics`: the Prometheus registry in text format 0.0.4;
 * - `GET /status`: JSON, `{ready, reason?, ...}` plus what the agent adds
 *   ({@link Health.setStatus}: the routing problems of the last reconcile).
 *
 * `?verbose` on /healthz and /readyz lists every check, as the Kubernetes components do.
 *
 * @example
 * ```ts ignore
 * const health = new Health();
 * await using server = await serveHealth({ address: "127.0.0.1:9753", health, registry: metrics.registry });
 * health.setReady(true);
 * ```
 * @module
 */

import { METRICS_CONTENT_TYPE, type Registry } from "./metrics.ts";
import { parseListenAddress } from "./settings_parse.ts";

// The config checks metricsAddress with it too, without loading the server.
export { parseListenAddress };

/** A liveness check: returns undefined when healthy, or what is wrong. */
export type Check = () => string | undefined;

/** The agent's health state, set by the agent, read by the endpoints. */
export class Health {
  #ready = false;
  #why = "starting";
  readonly #checks = new Map<string, Check>();
  #status: () => Record<string, unknown> = () => ({});
  readonly #details = new Map<string, { ok: boolean; text: string }[]>();

  readonly #problems = new Map<string, string>();

  /** Marks the agent ready, or not ready with a reason (`etcd unreachable`). */
  setReady(ready: boolean, reason = ready ? "" : "not ready"): void {
    this.#ready = ready;
    this.#why = reason;
  }

  /**
   * A named problem that makes the agent not ready while it lasts, whatever `setReady`
   * says (the Kubernetes API refusing the agent: 403); `undefined` clears it.
   */
  setProblem(name: string, reason: string | undefined): void {
    if (reason === undefined) this.#problems.delete(name);
    else this.#problems.set(name, reason);
  }

  /**
   * Named lines shown by `/readyz?verbose` under the agent's own line (the bgp backend's
   * sessions): `ok` false marks a line `[-]`.
   */
  setDetails(name: string, lines: { ok: boolean; text: string }[]): void {
    this.#details.set(name, lines);
  }

  get details(): { ok: boolean; text: string }[] {
    return [...this.#details.values()].flat();
  }

  get ready(): boolean {
    return this.#ready && this.#problems.size === 0;
  }

  /** Why the agent is not ready ("" when it is). */
  get notReadyReason(): string {
    if (!this.#ready) return this.#why;
    return [...this.#problems.values()].join("; ");
  }

  /** Sets what `/status` shows besides readiness. */
  setStatus(status: () => Record<string, unknown>): void {
    this.#status = status;
  }

  /** `/status`'s document. */
  status(): Record<string, unknown> {
    return {
      ready: this.ready,
      ...(this.ready ? {} : { reason: this.notReadyReason }),
      ...this.#status(),
    };
  }

  /** Adds (or replaces) a named liveness check. */
  addCheck(name: string, check: Check): void {
    this.#checks.set(name, check);
  }

  removeCheck(name: string): void {
    this.#checks.delete(name);
  }

  /** Runs the liveness checks: name → problem (undefined = ok). A throwing check fails. */
  liveness(): [string, string | undefined][] {
    return [...this.#checks].map(([name, check]) => {
      try {
        return [name, check()];
      } catch (e) {
        return [name, `check failed: ${(e as Error)?.message ?? e}`];
      }
    });
  }
}

export interface HealthServerOptions {
  /** `HOST:PORT` to listen on (port 0 picks a free one). */
  address: string;
  health: Health;
  registry: Registry;
}

/** A running endpoint server; dispose (or `close()`) to stop it. */
export interface HealthServer extends AsyncDisposable {
  /** Where it listens (the real port when 0 was asked for). */
  readonly hostname: string;
  readonly port: number;
  /** `http://HOST:PORT`. */
  readonly url: string;
  close(): Promise<void>;
}

/** Answers one request (exported so the endpoints can be tested without a socket). */
function handleHealth(req: Request, health: Health, registry: Registry): Response {
  const url = new URL(req.url);
  if (req.method !== "GET" && req.method !== "HEAD") {
    return new Response("method not allowed\n", { status: 405, headers: { allow: "GET, HEAD" } });
  }
  const verbose = url.searchParams.has("verbose");
  const text = (status: number, body: string) =>
    new Response(req.method === "HEAD" ? null : body, {
      status,
      headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" },
    });
  switch (url.pathname) {
    case "/healthz": {
      const checks = health.liveness();
      const bad = checks.filter(([, p]) => p !== undefined);
      if (verbose) {
        const lines = checks.map(([n, p]) =>
          p === undefined ? `[+]${n} ok` : `[-]${n} failed: ${p}`
        );
        lines.push(bad.length ? "healthz check failed" : "healthz check passed");
        return text(bad.length ? 503 : 200, lines.join("\n") + "\n");
      }
      return bad.length
        ? text(503, bad.map(([n, p]) => `${n}: ${p}`).join("\n") + "\n")
        : text(200, "ok\n");
    }
    case "/readyz": {
      if (verbose) {
        const line = health.ready ? "[+]agent ok" : `[-]agent not ready: ${health.notReadyReason}`;
        const more = health.details.map((d) => `${d.ok ? "[+]" : "[-]"}${d.text}\n`).join("");
        return text(
          health.ready ? 200 : 503,
          `${line}\n${more}readyz check ${health.ready ? "passed" : "failed"}\n`,
        );
      }
      return health.ready ? text(200, "ok\n") : text(503, `not ready: ${health.notReadyReason}\n`);
    }
    case "/metrics":
      return new Response(req.method === "HEAD" ? null : registry.render(), {
        status: 200,
        headers: { "content-type": METRICS_CONTENT_TYPE, "cache-control": "no-store" },
      });
    case "/status":
      return new Response(
        req.method === "HEAD" ? null : JSON.stringify(health.status(), null, 2) + "\n",
        {
          status: 200,
          headers: { "content-type": "application/json", "cache-control": "no-store" },
        },
      );
    default:
      return text(404, "not found: /healthz, /readyz, /metrics, /status\n");
  }
}

/** Starts serving the endpoints. */
export function serveHealth(opts: HealthServerOptions): Promise<HealthServer> {
  const { hostname, port } = parseListenAddress(opts.address);
  return new Promise((resolve, reject) => {
    let server: Deno.HttpServer<Deno.NetAddr>;
    try {
      server = Deno.serve(
        {
          hostname,
          port,
          onListen: (a) => {
            // Called inside Deno.serve, before `server` is assigned: use the address given.
            const host = a.hostname.includes(":") ? `[${a.hostname}]` : a.hostname;
            resolve({
              hostname: a.hostname,
              port: a.port,
              url: `http://${host}:${a.port}`,
              close: () => server.shutdown(),
              [Symbol.asyncDispose]: () => server.shutdown(),
            });
          },
          onError: () => new Response("internal error\n", { status: 500 }),
        },
        (req) => handleHealth(req, opts.health, opts.registry),
      );
    } catch (e) {
      reject(
        new Error(`cannot serve health and metrics on ${opts.address}: ${(e as Error).message}`, {
          cause: e,
        }),
      );
    }
  });
}
