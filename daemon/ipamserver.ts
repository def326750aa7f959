/**
 * The node agent's IPAM server: the socket protocol of docs/ipam-socket.md
 * (`ipam/protocol.ts`) on a unix socket (mode 0600), answered from the cluster IPAM for
 * this node. The plugin is its only client; one allocation is one etcd transaction.
 *
 * The server opens only once the agent has its blocks and state loaded (the caller
 * decides when); until `ready()` says so, allocate answers `not-ready` (the plugin
 * reports CNI error 11), so no address is handed out from unsynchronised state.
 *
 * Every verb acts on this node's attachments only (the cluster IPAM is called with this
 * node's scope): another node's attachment is not found here. The admin CLI is the only
 * cross-node tool. A request body is read up to `MAX_REQUEST_BYTES` (413 beyond) and
 * every field is bounded (`FIELD_LIMITS`, 400 naming the field), so one request cannot
 * hold megabytes in the agent nor send them to etcd.
 * @module
 */

import { addressOfIpKey, type ClusterIpam } from "../ipam/cluster.ts";
import {
  AddressUnavailableError,
  HandleExistsError,
  IpamConfigError,
  IpamExhaustedError,
} from "../ipam/errors.ts";
import {
  type AllocateRequest,
  type AllocateResponse,
  type CheckRequest,
  type CniRequest,
  type CniResponse,
  ERROR_KINDS,
  type ErrorKind,
  FIELD_LIMITS,
  FORWARDED_ENV,
  type GcRequest,
  type GcResponse,
  MAX_REQUEST_BYTES,
  MAX_REQUESTED_IPS,
  type Messages,
  type ReleaseRequest,
  type ReleaseResponse,
  type StatusResponse,
  type Verb,
  verbOf,
} from "../ipam/protocol.ts";
import { type Attachment, checkAttachment, handleId, quoteShort } from "../ipam/records.ts";
import { StoreConflictError, StoreUnavailableError } from "../ipam/store.ts";
import type { Logger } from "../lib/log.ts";

export interface IpamServerEvent {
  op: Verb;
  ok: boolean;
  /** The error kind when not ok. */
  reason?: ErrorKind;
  /** Addresses given out (allocate) or freed (release, gc) by this request. */
  addresses?: number;
  ms: number;
}

export interface IpamServerOptions {
  socket: string;
  /** The CNI network name this agent serves (requests for others are refused). */
  network: string;
  node: string;
  ipam: ClusterIpam;
  log: Logger;
  /** Whether ADD can be served now (state loaded, routes programmed). */
  ready: () => boolean;
  /** Called after every request (metrics). */
  observe?: (e: IpamServerEvent) => void;
  /**
   * The fixed addresses a pod asks for by annotation (`ohno.io/ip-addrs`), undefined for
   * none; asked only when the plugin sends no requestedIPs. Absent without Kubernetes.
   */
  podRequestedIPs?: (namespace: string, name: string) => Promise<string[] | undefined>;
  /**
   * Runs a whole CNI call in-process (`POST /v1/cni`); without it the route answers
   * `elsewhere` and the plugin does the call itself.
   */
  cni?: (req: CniRequest) => Promise<CniResponse>;
}

export interface IpamServer extends AsyncDisposable {
  readonly socket: string;
  /** Answers one request as the socket would (the agent's in-process CNI calls use it). */
  handle(req: Request): Promise<Response>;
  close(): Promise<void>;
}

class ProtocolError extends Error {
  /** `status` overrides the kind's HTTP status (413 for a body that is too large). */
  constructor(readonly kind: ErrorKind, message: string, readonly status?: number) {
    super(message);
  }
}

function kindOf(e: unknown): ErrorKind {
  if (e instanceof ProtocolError) return e.kind;
  if (e instanceof HandleExistsError) return "exists";
  if (e instanceof AddressUnavailableError) return "unavailable";
  if (e instanceof IpamExhaustedError) return "exhausted";
  if (e instanceof StoreUnavailableError || e instanceof StoreConflictError) return "not-ready";
  if (e instanceof TypeError || e instanceof IpamConfigError || e instanceof SyntaxError) {
    return "invalid";
  }
  return "internal";
}

function errorResponse(kind: ErrorKind, message: string, status?: number): Response {
  return Response.json({ error: { kind, message } }, { status: status ?? ERROR_KINDS[kind] });
}

const tooLarge = (n: string) =>
  new ProtocolError(
    "invalid",
    `request body is ${n} bytes; at most ${MAX_REQUEST_BYTES} are allowed`,
    413,
  );

/** The body as text, reading at most MAX_REQUEST_BYTES (never buffering a huge body). */
async function readLimited(req: Request): Promise<string> {
  const declared = req.headers.get("content-length");
  if (declared !== null && Number(declared) > MAX_REQUEST_BYTES) throw tooLarge(declared);
  if (!req.body) return "";
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read().catch((e) => {
      throw new ProtocolError("invalid", `request body could not be read: ${(e as Error).message}`);
    });
    if (done) break;
    size += value.byteLength;
    if (size > MAX_REQUEST_BYTES) {
      await reader.cancel().catch(() => {});
      throw tooLarge(`more than ${MAX_REQUEST_BYTES}`);
    }
    chunks.push(value);
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.byteLength;
  }
  return new TextDecoder().decode(all);
}

async function body<T>(req: Request): Promise<T> {
  const text = await readLimited(req);
  try {
    const v = JSON.parse(text);
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error("not an object");
    return v as T;
  } catch (e) {
    throw new ProtocolError(
      "invalid",
      `request body is not a JSON object: ${(e as Error).message}`,
    );
  }
}

/** An optional string field: a string of at most `max` characters, or absent. */
function checkString(field: string, v: unknown, max: number): void {
  if (v === undefined || v === null) return;
  if (typeof v !== "string") throw new ProtocolError("invalid", `${field} must be a string`);
  if (v.length > max) {
    throw new ProtocolError(
      "invalid",
      `${field} is ${v.length} characters long; at most ${max} are allowed`,
    );
  }
}

/** The bounds of every field an allocate can carry (the others carry a subset). */
function checkFields(b: Record<string, unknown>): void {
  for (const f of ["network", "netns", "podNamespace", "podName", "podUid"] as const) {
    checkString(f, b[f], FIELD_LIMITS[f]);
  }
  const req = b.requestedIPs;
  if (req === undefined || req === null) return;
  if (!Array.isArray(req)) throw new ProtocolError("invalid", "requestedIPs must be a list");
  if (req.length > MAX_REQUESTED_IPS) {
    throw new ProtocolError(
      "invalid",
      `requestedIPs has ${req.length} entries; at most ${MAX_REQUESTED_IPS} (one per family)`,
    );
  }
  req.forEach((ip, i) => checkString(`requestedIPs[${i}]`, ip, FIELD_LIMITS.requestedIP));
}

/**
 * The pod's annotated addresses: a malformed annotation is `unavailable` (CNI 102) naming
 * it; an API that cannot answer is `not-ready` (CNI 11): the pod may ask for a fixed
 * address, so it must not get a random one.
 */
async function annotatedIPs(
  lookup: NonNullable<IpamServerOptions["podRequestedIPs"]>,
  namespace: string,
  name: string,
): Promise<string[] | undefined> {
  try {
    return await lookup(namespace, name);
  } catch (e) {
    if ((e as Error).name === "AnnotationError") {
      throw new ProtocolError("unavailable", (e as Error).message);
    }
    throw new ProtocolError(
      "not-ready",
      `cannot read pod ${namespace}/${name} for its ohno.io/ip-addrs annotation: ${
        (e as Error).message
      }`,
    );
  }
}

/** What every verb's handler works with. */
interface Ctx {
  o: IpamServerOptions;
  log: Logger;
  /** Only this node's attachments, for every verb. */
  scope: { node: string };
}

/** A verb's answer, and how many addresses it gave out or freed (metrics). */
type Answer<V extends Verb> = { res: Messages[V]["res"]; addresses?: number };

/** Every body: bounded fields, this agent's network, a valid attachment (unless `gc`). */
async function request<T extends { network: string }>(
  c: Ctx,
  req: Request,
  attachment: boolean,
): Promise<T> {
  const b = await body<T>(req);
  checkFields(b as unknown as Record<string, unknown>);
  if (b.network !== c.o.network) {
    throw new ProtocolError(
      "invalid",
      `this agent serves network ${JSON.stringify(c.o.network)}, not ${quoteShort(b.network)}`,
    );
  }
  if (attachment) checkAttachment(b as unknown as Attachment);
  return b;
}

function checkReady(c: Ctx): void {
  if (!c.o.ready()) {
    throw new ProtocolError("not-ready", `agent on node ${c.o.node} is not ready yet`);
  }
}

/** The runtime's static addresses win; else the pod's annotation, if it has one. */
async function wantedIPs(
  c: Ctx,
  b: AllocateRequest,
): Promise<{ requestedIPs?: string[] | undefined; annotated: boolean }> {
  const requestedIPs = b.requestedIPs?.length ? b.requestedIPs : undefined;
  if (requestedIPs || !b.podNamespace || !b.podName || !c.o.podRequestedIPs) {
    return { requestedIPs, annotated: false };
  }
  const annotated = await annotatedIPs(c.o.podRequestedIPs, b.podNamespace, b.podName);
  return { requestedIPs: annotated, annotated: annotated !== undefined };
}

async function allocate(c: Ctx, req: Request): Promise<Answer<"allocate">> {
  const b = await request<AllocateRequest>(c, req, true);
  checkReady(c);
  const { requestedIPs, annotated } = await wantedIPs(c, b);
  let got;
  try {
    got = await c.o.ipam.allocate({
      node: c.o.node,
      containerID: b.containerID,
      ifname: b.ifname,
      ...(b.podNamespace ? { podNamespace: b.podNamespace } : {}),
      ...(b.podName ? { podName: b.podName } : {}),
      ...(b.podUid ? { podUid: b.podUid } : {}),
      ...(requestedIPs?.length ? { requestedIPs } : {}),
    });
  } catch (e) {
    if (annotated && e instanceof AddressUnavailableError) {
      throw new ProtocolError(
        "unavailable",
        `pod ${b.podNamespace}/${b.podName} annotation ohno.io/ip-addrs: ${e.message}`,
      );
    }
    throw e;
  }
  c.log.info("allocated", {
    container: b.containerID.slice(0, 12),
    ifname: b.ifname,
    pod: b.podName ? `${b.podNamespace ?? "-"}/${b.podName}` : undefined,
    ips: got.map((g) => g.address).join(","),
  });
  const res: AllocateResponse = {
    ips: got.map((g) => ({ address: g.address, gateway: g.gateway })),
  };
  return { res, addresses: got.length };
}

async function release(c: Ctx, req: Request): Promise<Answer<"release">> {
  const b = await request<ReleaseRequest>(c, req, true);
  const released = await c.o.ipam.release(b, c.scope);
  const res: ReleaseResponse = { released };
  if (released.length) {
    c.log.info("released", { container: b.containerID.slice(0, 12), ips: released.join(",") });
  } else {
    res.message = `${handleId(b)} holds no address on node ${c.o.node}; nothing released`;
  }
  return { res, addresses: released.length };
}

async function check(c: Ctx, req: Request): Promise<Answer<"check">> {
  const b = await request<CheckRequest>(c, req, true);
  const h = await c.o.ipam.get(b, c.scope);
  if (!h) {
    throw new ProtocolError("not-found", `${handleId(b)} holds no address on node ${c.o.node}`);
  }
  return { res: { ips: h.keys.map((k) => ({ address: addressOfIpKey(k) })) } };
}

async function gc(c: Ctx, req: Request): Promise<Answer<"gc">> {
  const b = await request<GcRequest>(c, req, false);
  if (!Array.isArray(b.validAttachments)) {
    throw new ProtocolError("invalid", "validAttachments must be a list");
  }
  b.validAttachments.forEach((a, i) => {
    if (typeof a !== "object" || a === null) {
      throw new ProtocolError("invalid", `validAttachments[${i}] must be an object`);
    }
    checkAttachment(a);
  });
  const r = await c.o.ipam.gc(c.o.node, b.validAttachments);
  const res: GcResponse = {
    released: r.released.map((h) => ({ containerID: h.containerID, ifname: h.ifname, ips: h.ips })),
    errors: r.errors,
  };
  if (res.released.length) c.log.info("GC released", { count: res.released.length });
  return { res, addresses: res.released.reduce((n, h) => n + h.ips.length, 0) };
}

/**
 * A whole CNI call: the plugin's environment and config, run by `o.cni`. The pod's
 * namespace must be visible here (`elsewhere` otherwise: the plugin does the call).
 */
async function cni(c: Ctx, req: Request): Promise<Answer<"cni">> {
  const b = await body<CniRequest>(req);
  if (typeof b.config !== "string") throw new ProtocolError("invalid", "config must be a string");
  if (typeof b.env !== "object" || b.env === null || Array.isArray(b.env)) {
    throw new ProtocolError("invalid", "env must be an object");
  }
  const env: Record<string, string> = {};
  for (const k of FORWARDED_ENV) {
    const v = (b.env as Record<string, unknown>)[k];
    if (v === undefined) continue;
    checkString(`env.${k}`, v, FIELD_LIMITS.netns);
    env[k] = v as string;
  }
  if (!c.o.cni) throw new ProtocolError("elsewhere", "this agent does not run CNI calls");
  const netns = env.CNI_NETNS ?? "";
  if (netns) {
    try {
      Deno.statSync(netns);
    } catch {
      throw new ProtocolError(
        "elsewhere",
        `CNI_NETNS ${quoteShort(netns, 200)} is not visible to the agent on node ${c.o.node}`,
      );
    }
  }
  return { res: await c.o.cni({ env, config: b.config }) };
}

async function status(c: Ctx): Promise<Answer<"status">> {
  checkReady(c);
  // A cheap read proves the datastore answers.
  await c.o.ipam.store.revision();
  const res: StatusResponse = { ready: true, node: c.o.node };
  return { res };
}

/** Each verb of the route table (ipam/protocol.ts) and its handler. */
const HANDLERS: { [V in Verb]: (c: Ctx, req: Request) => Promise<Answer<V>> } = {
  allocate,
  release,
  check,
  gc,
  status,
  cni,
};

export function startIpamServer(o: IpamServerOptions): IpamServer {
  const dir = o.socket.replace(/\/[^/]*$/, "");
  if (dir) Deno.mkdirSync(dir, { recursive: true, mode: 0o755 });
  try {
    Deno.removeSync(o.socket); // a stale socket of an earlier run
  } catch {
    // none
  }
  const log = o.log.child("ipam");
  const ctx: Ctx = { o, log, scope: { node: o.node } };

  const handle = async (req: Request): Promise<Response> => {
    const path = new URL(req.url).pathname;
    const op = verbOf(req.method, path);
    if (!op) {
      return errorResponse("invalid", `no ${req.method} ${quoteShort(path, 100)}`);
    }
    const t0 = performance.now();
    try {
      const { res, addresses } = await HANDLERS[op](ctx, req);
      o.observe?.({
        op,
        ok: true,
        ...(addresses !== undefined ? { addresses } : {}),
        ms: performance.now() - t0,
      });
      return Response.json(res);
    } catch (e) {
      const kind = kindOf(e);
      const message = (e as Error)?.message ?? String(e);
      if (kind === "internal" || kind === "not-ready") {
        log.warn(`${op} failed`, { kind, error: message });
      }
      o.observe?.({ op, ok: false, reason: kind, ms: performance.now() - t0 });
      return errorResponse(kind, message, e instanceof ProtocolError ? e.status : undefined);
    }
  };
  const server = Deno.serve({ path: o.socket, onListen() {} }, handle);
  Deno.chmodSync(o.socket, 0o600);
  log.info("serving IPAM", { socket: o.socket, network: o.network });
  const close = async () => {
    await server.shutdown();
    try {
      Deno.removeSync(o.socket);
    } catch {
      // gone
    }
  };
  return { socket: o.socket, handle, close, [Symbol.asyncDispose]: close };
}
