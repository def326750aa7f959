/**
 * The node agent's IPAM server: the socket protocol of docs/ipam-socket.md
 * (`ipam/protocol.ts`) on a unix socket (mode 0600), answered from the cluster IPAM for
 * this node. The plugin is its only client; one allocation is one etcd transaction.
 *
 * The server opens only once the agent has its blocks and state loaded (the caller
 * decides when); until `ready()` says so, allocate answers `not-ready` (the plugin
 * reports CNI error 11), so no address is handed out from unsynchronised state.
 * @module
 */

import type { ClusterIpam } from "../ipam/cluster.ts";
import {
  AddressUnavailableError,
  HandleExistsError,
  IpamConfigError,
  IpamExhaustedError,
} from "../ipam/errors.ts";
import {
  type AllocateRequest,
  type AllocateResponse,
  ERROR_KINDS,
  type ErrorKind,
  type GcRequest,
  type GcResponse,
  type ReleaseRequest,
  type StatusResponse,
} from "../ipam/protocol.ts";
import { checkAttachment } from "../ipam/records.ts";
import { StoreConflictError, StoreUnavailableError } from "../ipam/store.ts";
import type { Logger } from "../lib/log.ts";

export interface IpamServerEvent {
  op: "allocate" | "release" | "check" | "gc" | "status";
  ok: boolean;
  /** The error kind when not ok. */
  reason?: ErrorKind;
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
}

export interface IpamServer extends AsyncDisposable {
  readonly socket: string;
  close(): Promise<void>;
}

class ProtocolError extends Error {
  constructor(readonly kind: ErrorKind, message: string) {
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

function errorResponse(kind: ErrorKind, message: string): Response {
  return Response.json({ error: { kind, message } }, { status: ERROR_KINDS[kind] });
}

async function body<T>(req: Request): Promise<T> {
  try {
    const v = await req.json();
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error("not an object");
    return v as T;
  } catch (e) {
    throw new ProtocolError(
      "invalid",
      `request body is not a JSON object: ${(e as Error).message}`,
    );
  }
}

export function startIpamServer(o: IpamServerOptions): IpamServer {
  const dir = o.socket.replace(/\/[^/]*$/, "");
  if (dir) Deno.mkdirSync(dir, { recursive: true, mode: 0o755 });
  try {
    Deno.removeSync(o.socket); // a stale socket of an earlier run
  } catch {
    // none
  }
  const log = o.log.child("ipam");

  const checkNetwork = (n: unknown) => {
    if (n !== o.network) {
      throw new ProtocolError(
        "invalid",
        `this agent serves network ${JSON.stringify(o.network)}, not ${JSON.stringify(n)}`,
      );
    }
  };

  const handle = async (req: Request, op: IpamServerEvent["op"]): Promise<Response> => {
    switch (op) {
      case "allocate": {
        const b = await body<AllocateRequest>(req);
        checkNetwork(b.network);
        checkAttachment(b);
        if (!o.ready()) {
          throw new ProtocolError("not-ready", `agent on node ${o.node} is not ready yet`);
        }
        const got = await o.ipam.allocate({
          node: o.node,
          containerID: b.containerID,
          ifname: b.ifname,
          ...(b.podNamespace ? { podNamespace: b.podNamespace } : {}),
          ...(b.podName ? { podName: b.podName } : {}),
          ...(b.podUid ? { podUid: b.podUid } : {}),
          ...(b.requestedIPs?.length ? { requestedIPs: b.requestedIPs } : {}),
        });
        log.info("allocated", {
          container: b.containerID.slice(0, 12),
          ifname: b.ifname,
          pod: b.podName ? `${b.podNamespace ?? "-"}/${b.podName}` : undefined,
          ips: got.map((g) => g.address).join(","),
        });
        const res: AllocateResponse = {
          ips: got.map((g) => ({ address: g.address, gateway: g.gateway })),
        };
        return Response.json(res);
      }
      case "release": {
        const b = await body<ReleaseRequest>(req);
        checkNetwork(b.network);
        checkAttachment(b);
        const released = await o.ipam.release(b);
        if (released.length) {
          log.info("released", { container: b.containerID.slice(0, 12), ips: released.join(",") });
        }
        return Response.json({ released });
      }
      case "check": {
        const b = await body<ReleaseRequest>(req);
        checkNetwork(b.network);
        const h = await o.ipam.get(b);
        if (!h) {
          throw new ProtocolError("not-found", `${b.containerID}/${b.ifname} holds no address`);
        }
        const ips = h.keys.map((k) => {
          const block = k.split("/").at(-2)!; // …/ips/<net>-<len>/<ip>
          return {
            address: `${k.slice(k.lastIndexOf("/") + 1)}/${
              block.slice(block.lastIndexOf("-") + 1)
            }`,
          };
        });
        return Response.json({ ips });
      }
      case "gc": {
        const b = await body<GcRequest>(req);
        checkNetwork(b.network);
        if (!Array.isArray(b.validAttachments)) {
          throw new ProtocolError("invalid", "validAttachments must be a list");
        }
        const r = await o.ipam.gc(o.node, b.validAttachments);
        const res: GcResponse = {
          released: r.released.map((h) => ({
            containerID: h.containerID,
            ifname: h.ifname,
            ips: h.ips,
          })),
          errors: r.errors,
        };
        if (res.released.length) log.info("GC released", { count: res.released.length });
        return Response.json(res);
      }
      case "status": {
        if (!o.ready()) {
          throw new ProtocolError("not-ready", `agent on node ${o.node} is not ready yet`);
        }
        // A cheap read proves the datastore answers.
        await o.ipam.store.revision();
        const res: StatusResponse = { ready: true, node: o.node };
        return Response.json(res);
      }
    }
  };

  const routes: Record<string, [string, IpamServerEvent["op"]]> = {
    "/v1/allocate": ["POST", "allocate"],
    "/v1/release": ["POST", "release"],
    "/v1/check": ["POST", "check"],
    "/v1/gc": ["POST", "gc"],
    "/v1/status": ["GET", "status"],
  };

  const server = Deno.serve({ path: o.socket, onListen() {} }, async (req) => {
    const path = new URL(req.url).pathname;
    const route = routes[path];
    if (!route || route[0] !== req.method) {
      return errorResponse("invalid", `no ${req.method} ${path}`);
    }
    const t0 = performance.now();
    try {
      const res = await handle(req, route[1]);
      o.observe?.({ op: route[1], ok: true, ms: performance.now() - t0 });
      return res;
    } catch (e) {
      const kind = kindOf(e);
      const message = (e as Error)?.message ?? String(e);
      if (kind === "internal" || kind === "not-ready") {
        log.warn(`${route[1]} failed`, { kind, error: message });
      }
      o.observe?.({ op: route[1], ok: false, reason: kind, ms: performance.now() - t0 });
      return errorResponse(kind, message);
    }
  });
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
  return { socket: o.socket, close, [Symbol.asyncDispose]: close };
}
