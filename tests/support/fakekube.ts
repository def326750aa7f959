/**
 * A fake Kubernetes API server, for the faults a real one will not produce on demand
 * (tests/e2e/ runs the real one): 401/403, 429 with Retry-After, 410 Gone, a watch that goes
 * silent. It speaks a small subset of the API, shaped like the real server's answers, for
 * the few resources the node agent uses (Nodes and Pods, core/v1), over HTTP on loopback. It
 * is not a conformant API server: it has no discovery (`/api`, `/apis`, `/version`), so
 * kubectl cannot talk to it.
 *
 * What it answers, in the form the real apiserver uses:
 * - `GET /api/v1/nodes`, `/api/v1/pods`, `/api/v1/namespaces/NS/pods`: lists with
 *   `metadata.resourceVersion`, `fieldSelector` (`metadata.name=`, `spec.nodeName=`,
 *   `metadata.namespace=`) and equality `labelSelector`;
 * - the same paths with `watch=true` (or `watch=1`): a chunked stream of one JSON event
 *   per line (`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`, `ERROR`), starting after
 *   `resourceVersion`; without one (or with `"0"`), synthetic `ADDED` events for what
 *   exists first. `allowWatchBookmarks=true` gets `BOOKMARK` events carrying only
 *   `metadata.resourceVersion`; `timeoutSeconds` ends the stream;
 * - a `resourceVersion` older than the compacted history → `410 Gone`: as an `ERROR`
 *   event holding a `Status` with code 410 (what the watch cache does) or, with
 *   `expiredWatch: "http"`, as an HTTP 410 response;
 * - `GET/DELETE /api/v1/nodes/NAME`, `GET /api/v1/nodes/NAME/status`;
 * - `PATCH /api/v1/nodes/NAME/status` with `application/merge-patch+json` (RFC 7386) or
 *   `application/strategic-merge-patch+json` (lists merged by their patch merge key:
 *   `status.conditions` and `status.addresses` by `type`); only `status` changes; a
 *   `metadata.resourceVersion` in the patch is a precondition (409 on mismatch); other
 *   patch types are 415;
 * - `DELETE /api/v1/namespaces/NS/pods/NAME`; `POST /api/v1/namespaces/NS/events` (kept
 *   in `events`);
 * - bearer-token authentication when a token is set (401 otherwise); errors as
 *   `Status` objects.
 *
 * Tests change the cluster directly (`putNode`, `deleteNode`, `putPod`, …), force
 * history compaction (`compact`), send bookmarks (`bookmark`), end every watch
 * (`closeWatches`), inject faults (`fail`: the next requests on a path answer with an
 * error status, e.g. 403 or 429 with Retry-After; `silence`: watch streams stay open and
 * bring nothing, as over a half-open connection), and read what clients sent (`requests`).
 * @module
 */

import type { Netns } from "../../netns/netns.ts";

type Json = Record<string, unknown>;

/** A Kubernetes object as the fake stores it (JSON). */
export interface KubeObject extends Json {
  metadata: {
    name: string;
    namespace?: string;
    uid: string;
    resourceVersion: string;
    creationTimestamp: string;
    labels?: Record<string, string>;
    [k: string]: unknown;
  };
}

type Kind = "nodes" | "pods";

interface HistoryEvent {
  rv: number;
  kind: Kind;
  type: "ADDED" | "MODIFIED" | "DELETED";
  object: KubeObject;
}

interface Watcher {
  kind: Kind;
  matches: (o: KubeObject) => boolean;
  bookmarks: boolean;
  send: (event: unknown) => void;
  close: () => void;
}

/** One request the fake received (for assertions on what a client sent). */
export interface SeenRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  contentType: string | null;
  body: string;
  /** When it arrived (Date.now()). */
  at: number;
}

/** A fault: requests whose method and path match answer with `status` (`times` of them). */
export interface Fault {
  status: number;
  reason: string;
  message?: string;
  /** A `Retry-After` header (seconds or an HTTP date). */
  retryAfter?: string;
  /** Which requests: method and path tested against this (default: all). */
  match?: RegExp;
  /** How many (default: until `clearFaults`). */
  times?: number;
}

export interface FakeKubeOptions {
  /** Require `Authorization: Bearer TOKEN`. */
  token?: string;
  /** How an expired watch is refused: an ERROR event (default) or HTTP 410. */
  expiredWatch?: "event" | "http";
  /** Send bookmarks to watchers that allow them every N ms (default: only on `bookmark()`). */
  bookmarkIntervalMs?: number;
  /** Serve HTTPS with this certificate and key (PEM) instead of HTTP. */
  tls?: { cert: string; key: string };
}

/** What a node helper accepts. */
export interface NodeSpec {
  /** InternalIP addresses (v4 and/or v6). */
  internalIPs?: string[];
  labels?: Record<string, string>;
  conditions?: Json[];
  podCIDRs?: string[];
}

/** What a pod helper accepts. */
export interface PodSpec {
  namespace?: string;
  nodeName: string;
  /** Container IDs as the kubelet reports them (`containerd://…`). */
  containerIDs?: string[];
  /** The sandbox's pod IPs. */
  podIPs?: string[];
  phase?: string;
  hostNetwork?: boolean;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

const encoder = new TextEncoder();

export class FakeKube implements AsyncDisposable {
  readonly #opts: FakeKubeOptions;
  readonly #objects: Record<Kind, Map<string, KubeObject>> = { nodes: new Map(), pods: new Map() };
  readonly #history: HistoryEvent[] = [];
  readonly #watchers = new Set<Watcher>();
  #rv = 100;
  #compactedTo = 0;
  #server: Deno.HttpServer<Deno.NetAddr> | undefined;
  #bookmarkTimer: ReturnType<typeof setInterval> | undefined;
  /** Every request, in order. */
  readonly requests: SeenRequest[] = [];
  /** Events clients created (`POST /api/v1/namespaces/NS/events`), in order. */
  readonly events: KubeObject[] = [];
  #faults: Fault[] = [];
  #silent = false;

  private constructor(opts: FakeKubeOptions) {
    this.#opts = opts;
  }

  /**
   * Starts a fake on 127.0.0.1 on a free port, or on `listen.hostname` inside
   * `listen.netns` (the listening socket is made in that namespace, so agents in a lab
   * reach it while the test drives it from here).
   */
  static start(
    opts: FakeKubeOptions = {},
    listen: { hostname?: string; port?: number; netns?: Netns } = {},
  ): Promise<FakeKube> {
    const fake = new FakeKube(opts);
    return new Promise((resolve) => {
      const serve = () =>
        Deno.serve({
          hostname: listen.hostname ?? "127.0.0.1",
          port: listen.port ?? 0,
          onListen: () => resolve(fake),
          ...(opts.tls ?? {}),
        }, (req) => fake.#handle(req));
      fake.#server = listen.netns ? listen.netns.run(serve) : serve();
      if (opts.bookmarkIntervalMs) {
        fake.#bookmarkTimer = setInterval(() => fake.bookmark(), opts.bookmarkIntervalMs);
      }
    });
  }

  /** `http://127.0.0.1:PORT` (`https://` with `tls`). */
  get url(): string {
    const a = this.#server!.addr;
    return `${this.#opts.tls ? "https" : "http"}://${a.hostname}:${a.port}`;
  }

  /** The current resourceVersion of the whole store. */
  get resourceVersion(): number {
    return this.#rv;
  }

  /** How many watch streams are open now. */
  get openWatches(): number {
    return this.#watchers.size;
  }

  /** Writes a kubeconfig that points at the fake (token auth when a token is set). */
  async writeKubeconfig(path: string): Promise<void> {
    const user = this.#opts.token ? `    token: ${this.#opts.token}\n` : "    {}\n";
    await Deno.writeTextFile(
      path,
      `apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: ${this.url}
users:
- name: tester
  user:
${user}contexts:
- name: fake
  context:
    cluster: fake
    user: tester
current-context: fake
`,
    );
  }

  // ---- changing the cluster from a test ----

  /** Creates or replaces a Node (ADDED or MODIFIED). */
  putNode(name: string, spec: NodeSpec = {}): KubeObject {
    const addresses = [
      ...(spec.internalIPs ?? []).map((address) => ({ type: "InternalIP", address })),
      { type: "Hostname", address: name },
    ];
    const old = this.#objects.nodes.get(name);
    const body: Json = {
      apiVersion: "v1",
      kind: "Node",
      metadata: { name, ...(spec.labels ? { labels: spec.labels } : {}) },
      spec: spec.podCIDRs ? { podCIDR: spec.podCIDRs[0], podCIDRs: spec.podCIDRs } : {},
      status: {
        addresses,
        conditions: spec.conditions ?? [
          { type: "Ready", status: "True", reason: "KubeletReady" },
        ],
      },
    };
    return this.#store("nodes", name, body, old);
  }

  /** Deletes a Node (DELETED); false when there was none. */
  deleteNode(name: string): boolean {
    return this.#remove("nodes", name) !== undefined;
  }

  getNode(name: string): KubeObject | undefined {
    const o = this.#objects.nodes.get(name);
    return o ? structuredClone(o) : undefined;
  }

  /** Creates or replaces a Pod. */
  putPod(name: string, spec: PodSpec): KubeObject {
    const namespace = spec.namespace ?? "default";
    const key = `${namespace}/${name}`;
    const body: Json = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: {
        name,
        namespace,
        ...(spec.labels ? { labels: spec.labels } : {}),
        ...(spec.annotations ? { annotations: spec.annotations } : {}),
      },
      spec: {
        nodeName: spec.nodeName,
        containers: [{ name: "main", image: "busybox" }],
        ...(spec.hostNetwork ? { hostNetwork: true } : {}),
      },
      status: {
        phase: spec.phase ?? "Running",
        ...(spec.podIPs
          ? { podIP: spec.podIPs[0], podIPs: spec.podIPs.map((ip) => ({ ip })) }
          : {}),
        containerStatuses: (spec.containerIDs ?? []).map((containerID, i) => ({
          name: i === 0 ? "main" : `c${i}`,
          containerID,
          ready: true,
        })),
      },
    };
    return this.#store("pods", key, body, this.#objects.pods.get(key));
  }

  deletePod(namespace: string, name: string): boolean {
    return this.#remove("pods", `${namespace}/${name}`) !== undefined;
  }

  /**
   * Forgets the event history: a watch or list asking for any resourceVersion older than
   * now gets 410 Gone, as after an etcd compaction.
   */
  compact(): void {
    this.#compactedTo = this.#rv;
    this.#history.length = 0;
  }

  /** Sends a BOOKMARK at the current resourceVersion to every watcher that allows them. */
  bookmark(): void {
    for (const w of this.#watchers) {
      if (!w.bookmarks) continue;
      w.send({
        type: "BOOKMARK",
        object: {
          kind: w.kind === "nodes" ? "Node" : "Pod",
          apiVersion: "v1",
          metadata: { resourceVersion: String(this.#rv) },
        },
      });
    }
  }

  /** Requests matching `f.match` (`"GET /api/v1/nodes?watch=true"`) answer with `f.status`. */
  fail(f: Fault): void {
    this.#faults.push({ ...f });
  }

  clearFaults(): void {
    this.#faults = [];
  }

  /**
   * While on, watch streams (open ones and new ones) stay open and bring nothing: no
   * event, no bookmark, no end, as over a connection whose peer is gone (half-open).
   * Events of that time are still in the history, for a watch that resumes after.
   */
  silence(on: boolean): void {
    this.#silent = on;
  }

  /** Ends every open watch stream (as the apiserver does at its timeout). */
  closeWatches(): void {
    for (const w of [...this.#watchers]) w.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#bookmarkTimer !== undefined) clearInterval(this.#bookmarkTimer);
    this.closeWatches();
    await this.#server?.shutdown();
  }

  // ---- store ----

  #store(kind: Kind, key: string, body: Json, old: KubeObject | undefined): KubeObject {
    const rv = ++this.#rv;
    const meta = body.metadata as Json;
    const obj = {
      ...body,
      metadata: {
        ...meta,
        uid: old?.metadata.uid ?? crypto.randomUUID(),
        resourceVersion: String(rv),
        creationTimestamp: old?.metadata.creationTimestamp ??
          new Date().toISOString().replace(/\.\d+Z$/, "Z"),
      },
    } as KubeObject;
    this.#objects[kind].set(key, obj);
    this.#emit({ rv, kind, type: old ? "MODIFIED" : "ADDED", object: obj });
    return structuredClone(obj);
  }

  #remove(kind: Kind, key: string): KubeObject | undefined {
    const old = this.#objects[kind].get(key);
    if (!old) return undefined;
    this.#objects[kind].delete(key);
    const rv = ++this.#rv;
    const obj = { ...old, metadata: { ...old.metadata, resourceVersion: String(rv) } };
    this.#emit({ rv, kind, type: "DELETED", object: obj });
    return obj;
  }

  #emit(e: HistoryEvent): void {
    this.#history.push(e);
    for (const w of this.#watchers) {
      if (w.kind === e.kind && w.matches(e.object)) {
        w.send({ type: e.type, object: e.object });
      }
    }
  }

  // ---- HTTP ----

  async #handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const body = req.body ? await req.text() : "";
    const query = Object.fromEntries(url.searchParams);
    this.requests.push({
      method: req.method,
      path: url.pathname,
      query,
      contentType: req.headers.get("content-type"),
      body,
      at: Date.now(),
    });
    const line = `${req.method} ${url.pathname}${url.search}`;
    const fault = this.#faults.find((f) => !f.match || f.match.test(line));
    if (fault) {
      if (fault.times !== undefined && --fault.times <= 0) {
        this.#faults = this.#faults.filter((f) => f !== fault);
      }
      const r = status(fault.status, fault.reason, fault.message ?? `injected ${fault.status}`);
      if (fault.retryAfter !== undefined) r.headers.set("retry-after", fault.retryAfter);
      return r;
    }
    if (this.#opts.token && req.headers.get("authorization") !== `Bearer ${this.#opts.token}`) {
      return status(401, "Unauthorized", "Unauthorized");
    }
    const p = url.pathname.replace(/\/+$/, "").split("/").slice(1);
    // /api/v1/...
    if (p[0] !== "api" || p[1] !== "v1") {
      return status(404, "NotFound", "the server could not find the requested resource");
    }
    const rest = p.slice(2);
    try {
      if (rest[0] === "nodes") {
        if (rest.length === 1 && req.method === "GET") return this.#listOrWatch("nodes", query);
        const name = rest[1]!;
        if (rest.length === 2 && req.method === "GET") return this.#get("nodes", name, name);
        if (rest.length === 2 && req.method === "DELETE") return this.#delete("nodes", name, name);
        if (rest.length === 3 && rest[2] === "status") {
          if (req.method === "GET") return this.#get("nodes", name, name);
          if (req.method === "PATCH") return this.#patchNodeStatus(name, req, body);
        }
      }
      if (rest[0] === "pods" && rest.length === 1 && req.method === "GET") {
        return this.#listOrWatch("pods", query);
      }
      if (rest[0] === "namespaces" && rest[2] === "events" && req.method === "POST") {
        const ev = JSON.parse(body) as KubeObject;
        this.events.push(ev);
        return json(201, ev);
      }
      if (rest[0] === "namespaces" && rest[2] === "pods") {
        const ns = rest[1]!;
        if (rest.length === 3 && req.method === "GET") {
          return this.#listOrWatch("pods", query, ns);
        }
        if (rest.length === 4) {
          const key = `${ns}/${rest[3]}`;
          if (req.method === "GET") return this.#get("pods", key, rest[3]!);
          if (req.method === "DELETE") return this.#delete("pods", key, rest[3]!);
        }
      }
    } catch (e) {
      if (e instanceof BadRequest) return status(400, "BadRequest", e.message);
      throw e;
    }
    return status(405, "MethodNotAllowed", `${req.method} ${url.pathname} is not supported`);
  }

  #get(kind: Kind, key: string, name: string): Response {
    const o = this.#objects[kind].get(key);
    if (!o) return status(404, "NotFound", `${kind} "${name}" not found`, { name, kind });
    return json(200, o);
  }

  #delete(kind: Kind, key: string, name: string): Response {
    const o = this.#remove(kind, key);
    if (!o) return status(404, "NotFound", `${kind} "${name}" not found`, { name, kind });
    return json(200, o);
  }

  #patchNodeStatus(name: string, req: Request, body: string): Response {
    const ct = (req.headers.get("content-type") ?? "").split(";")[0]!.trim();
    const strategic = ct === "application/strategic-merge-patch+json";
    if (!strategic && ct !== "application/merge-patch+json") {
      return status(
        415,
        "UnsupportedMediaType",
        `the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json (got ${ct})`,
      );
    }
    const old = this.#objects.nodes.get(name);
    if (!old) return status(404, "NotFound", `nodes "${name}" not found`, { name, kind: "nodes" });
    let patch: unknown;
    try {
      patch = JSON.parse(body);
    } catch (e) {
      return status(400, "BadRequest", `error decoding patch: ${(e as Error).message}`);
    }
    if (!isObject(patch)) return status(400, "BadRequest", "patch is not a JSON object");
    const wantRv = isObject(patch.metadata) ? patch.metadata.resourceVersion : undefined;
    if (wantRv !== undefined && wantRv !== old.metadata.resourceVersion) {
      return status(
        409,
        "Conflict",
        `Operation cannot be fulfilled on nodes "${name}": the object has been modified; please apply your changes to the latest version and try again`,
        { name, kind: "nodes" },
      );
    }
    const patched = strategic ? strategicMerge(old, patch, []) : mergePatch(old, patch);
    // The status subresource changes status only.
    const next = { ...old, status: (patched as Json).status ?? {} };
    return json(200, this.#store("nodes", name, next, old));
  }

  #listOrWatch(kind: Kind, q: Record<string, string>, namespace?: string): Response {
    const matches = selector(q, namespace);
    const watch = q.watch === "true" || q.watch === "1";
    const rvText = q.resourceVersion;
    const rv = rvText === undefined || rvText === "" ? undefined : Number(rvText);
    if (rv !== undefined && !Number.isInteger(rv)) {
      throw new BadRequest(`invalid resource version ${JSON.stringify(rvText)}`);
    }
    if (!watch) {
      if (q.resourceVersionMatch === "Exact" && rv !== undefined && rv < this.#compactedTo) {
        return status(410, "Expired", `too old resource version: ${rv} (${this.#compactedTo})`);
      }
      const items = [...this.#objects[kind].values()].filter(matches).map((o) => {
        const { kind: _k, apiVersion: _a, ...rest } = o;
        return rest;
      });
      return json(200, {
        kind: kind === "nodes" ? "NodeList" : "PodList",
        apiVersion: "v1",
        metadata: { resourceVersion: String(this.#rv) },
        items,
      });
    }
    const expired = rv !== undefined && rv !== 0 && rv < this.#compactedTo;
    if (expired && this.#opts.expiredWatch === "http") {
      return status(410, "Expired", `too old resource version: ${rv} (${this.#compactedTo})`);
    }
    const bookmarks = q.allowWatchBookmarks === "true";
    const timeout = q.timeoutSeconds ? Number(q.timeoutSeconds) : undefined;
    let watcher: Watcher | undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stream = new ReadableStream<Uint8Array>({
      start: (controller) => {
        let open = true;
        const send = (event: unknown) => {
          if (open && !this.#silent) {
            controller.enqueue(encoder.encode(JSON.stringify(event) + "\n"));
          }
        };
        const close = () => {
          if (!open) return;
          open = false;
          if (timer !== undefined) clearTimeout(timer);
          if (watcher) this.#watchers.delete(watcher);
          try {
            controller.close();
          } catch {
            // already closed by the client going away
          }
        };
        if (expired) {
          send({
            type: "ERROR",
            object: {
              kind: "Status",
              apiVersion: "v1",
              metadata: {},
              status: "Failure",
              message: `too old resource version: ${rv} (${this.#compactedTo})`,
              reason: "Expired",
              code: 410,
            },
          });
          close();
          return;
        }
        if (rv === undefined || rv === 0) {
          for (const o of this.#objects[kind].values()) {
            if (matches(o)) send({ type: "ADDED", object: o });
          }
        } else {
          for (const e of this.#history) {
            if (e.rv > rv && e.kind === kind && matches(e.object)) {
              send({ type: e.type, object: e.object });
            }
          }
        }
        watcher = { kind, matches, bookmarks, send, close };
        this.#watchers.add(watcher);
        // A silent (half-open) stream does not end at its timeout either.
        if (timeout !== undefined) {
          timer = setTimeout(() => this.#silent || close(), timeout * 1000);
        }
      },
      cancel: () => {
        if (timer !== undefined) clearTimeout(timer);
        if (watcher) this.#watchers.delete(watcher);
      },
    });
    return new Response(stream, {
      status: 200,
      headers: { "content-type": "application/json", "transfer-encoding": "chunked" },
    });
  }
}

class BadRequest extends Error {}

function json(code: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status: code,
    headers: { "content-type": "application/json" },
  });
}

function status(code: number, reason: string, message: string, details?: Json): Response {
  return json(code, {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message,
    reason,
    ...(details ? { details } : {}),
    code,
  });
}

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Field and label selectors the fake understands (equality only, comma = and). */
function selector(q: Record<string, string>, namespace?: string): (o: KubeObject) => boolean {
  const fields: [string, string, boolean][] = [];
  for (const part of (q.fieldSelector ?? "").split(",").filter(Boolean)) {
    const m = /^([\w.]+)(==|=|!=)(.*)$/.exec(part);
    if (!m) throw new BadRequest(`invalid field selector ${JSON.stringify(part)}`);
    if (!["metadata.name", "metadata.namespace", "spec.nodeName"].includes(m[1]!)) {
      throw new BadRequest(`field label not supported: ${m[1]}`);
    }
    fields.push([m[1]!, m[3]!, m[2] === "!="]);
  }
  const labels: [string, string, boolean][] = [];
  for (const part of (q.labelSelector ?? "").split(",").filter(Boolean)) {
    const m = /^([\w./-]+)(==|=|!=)(.*)$/.exec(part);
    if (!m) throw new BadRequest(`unsupported label selector ${JSON.stringify(part)}`);
    labels.push([m[1]!, m[3]!, m[2] === "!="]);
  }
  return (o) => {
    if (namespace !== undefined && o.metadata.namespace !== namespace) return false;
    for (const [path, want, negate] of fields) {
      const v = path === "metadata.name"
        ? o.metadata.name
        : path === "metadata.namespace"
        ? o.metadata.namespace
        : ((o.spec as Json | undefined)?.nodeName as string | undefined);
      if ((v === want) === negate) return false;
    }
    for (const [k, want, negate] of labels) {
      if ((o.metadata.labels?.[k] === want) === negate) return false;
    }
    return true;
  };
}

/** RFC 7386 JSON merge patch. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return structuredClone(patch);
  const out: Json = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** Lists merged by key in a strategic merge patch (path → merge key), for what the fake serves. */
const MERGE_KEYS: Record<string, string> = {
  "status.conditions": "type",
  "status.addresses": "type",
};

/** Strategic merge patch, for the lists Node status has (merge by key; others replaced). */
export function strategicMerge(target: unknown, patch: unknown, path: string[]): unknown {
  if (!isObject(patch)) {
    if (Array.isArray(patch)) {
      const key = MERGE_KEYS[path.join(".")];
      if (key && Array.isArray(target)) {
        const out = target.map((x) => structuredClone(x) as unknown);
        for (const item of patch) {
          if (!isObject(item)) continue;
          const i = out.findIndex((x) => isObject(x) && x[key] === item[key]);
          if (item.$patch === "delete") {
            if (i >= 0) out.splice(i, 1);
          } else if (i >= 0) {
            out[i] = strategicMerge(out[i], item, [...path, "[]"]);
          } else {
            out.push(structuredClone(item));
          }
        }
        return out;
      }
    }
    return structuredClone(patch);
  }
  const out: Json = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (k === "$patch") continue;
    if (v === null) delete out[k];
    else out[k] = strategicMerge(out[k], v, [...path, k]);
  }
  return out;
}
