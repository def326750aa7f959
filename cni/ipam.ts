/**
 * The plugin's IPAM, chosen by `ipam.type` and its keys:
 * - `ohno` with `ranges`: embedded, in-process from the local file store;
 * - `ohno` with `daemonSocket`: the node agent over its unix socket;
 * - any other type: delegated to that IPAM plugin in CNI_PATH, as the spec says.
 * The same drivers serve the main plugin and the `ohno-ipam` face.
 * @module
 */

import { AgentClient, type AgentTransport } from "../ipam/client.ts";
import { LocalStore } from "../ipam/local.ts";
import { RangeAllocator } from "../ipam/ranges.ts";
import type { Attachment } from "../ipam/records.ts";
import type { Store } from "../ipam/store.ts";
import type { NetConf } from "./config.ts";
import { execPlugin } from "./delegate.ts";
import type { CniEnv } from "./env.ts";
import { CniCode, CniError } from "./errors.ts";
import { type Dns, type IpConfig, parseResult, type Result, type Route } from "./result.ts";
import { SUPPORTED_VERSIONS } from "./versions.ts";

/** What IPAM hands the main plugin: addresses (no interface index yet), routes, dns. */
export interface IpamOutcome {
  ips: IpConfig[];
  routes: Route[];
  dns?: Dns;
}

export interface IpamDriver {
  /** Allocates for (CNI_CONTAINERID, CNI_IFNAME). */
  add(): Promise<IpamOutcome>;
  /** Releases; success when nothing was held. */
  del(): Promise<void>;
  /** Throws CniError when the allocation does not match `prev`. */
  check(prev: Result): Promise<void>;
  /** Releases every attachment of the network not in `valid`. */
  gc(valid: Attachment[]): Promise<void>;
  /** Throws CniError 50 when ADD cannot be served. */
  status(): Promise<void>;
  /** Whether the network holds no allocation any more (only where IPAM is local). */
  isEmpty?(): Promise<boolean>;
}

export interface IpamContext {
  conf: NetConf;
  env: CniEnv;
  /** The config exactly as received (what a delegated plugin gets). */
  stdin: string;
  /** In the node agent: the agent IPAM through the agent's own handler. */
  agent?: AgentTransport;
}

/** Static addresses: runtimeConfig.ips / args.cni.ips first, then CNI_ARGS IP=. */
function requested(ctx: IpamContext): string[] {
  return ctx.conf.requestedIPs.length ? ctx.conf.requestedIPs : ctx.env.args.ips;
}

function pod(ctx: IpamContext): { podNamespace?: string; podName?: string; podUid?: string } {
  return {
    ...(ctx.env.args.podNamespace ? { podNamespace: ctx.env.args.podNamespace } : {}),
    ...(ctx.env.args.podName ? { podName: ctx.env.args.podName } : {}),
    ...(ctx.env.args.podUid ? { podUid: ctx.env.args.podUid } : {}),
  };
}

function attachment(ctx: IpamContext): Attachment {
  return { containerID: ctx.env.containerID, ifname: ctx.env.ifname };
}

/** Addresses of `prev` (without prefix) that IPAM must hold, for CHECK. */
function prevAddresses(prev: Result): string[] {
  return (prev.ips ?? []).map((ip) => ip.address.replace(/\/\d+$/, ""));
}

function checkHeld(held: string[], prev: Result, where: string): void {
  const missing = prevAddresses(prev).filter((ip) => !held.includes(ip));
  if (missing.length) {
    throw new CniError(
      CniCode.CheckFailed,
      `${where} does not hold ${missing.join(", ")} for this attachment (holds ${
        held.join(", ") || "nothing"
      })`,
    );
  }
}

/** The store STATUS probes: the local file store can say whether it is writable now. */
type EmbeddedStore = Store & { probeWrite?(): Promise<void> };

/** Embedded IPAM: `ranges` allocated in-process from the local file store (tests: any store). */
export class EmbeddedIpam implements IpamDriver {
  readonly #store: EmbeddedStore;
  readonly #alloc: RangeAllocator;
  constructor(
    readonly ctx: IpamContext,
    conf: Extract<NetConf["ipam"], { mode: "embedded" }>,
    store: EmbeddedStore = new LocalStore(conf.dataDir),
  ) {
    this.#store = store;
    this.#alloc = new RangeAllocator(this.#store, ctx.conf.name, conf.sets);
  }
  async add(): Promise<IpamOutcome> {
    const ips = await this.#alloc.allocate({
      ...attachment(this.ctx),
      requestedIPs: requested(this.ctx),
      ...pod(this.ctx),
    });
    const ipam = this.ctx.conf.ipam as Extract<NetConf["ipam"], { mode: "embedded" }>;
    return {
      ips: ips.map((i) => ({ address: i.address, gateway: i.gateway })),
      routes: ipam.routes,
    };
  }
  async del(): Promise<void> {
    await this.#alloc.release(attachment(this.ctx));
  }
  async isEmpty(): Promise<boolean> {
    return (await this.#alloc.list()).length === 0;
  }
  async check(prev: Result): Promise<void> {
    const held = (await this.#alloc.get(attachment(this.ctx)))?.map((i) => i.ip) ?? [];
    checkHeld(held, prev, `the IPAM store of network ${this.ctx.conf.name}`);
  }
  async gc(valid: Attachment[]): Promise<void> {
    const r = await this.#alloc.gc(valid);
    if (r.errors.length) {
      throw new CniError(CniCode.IoFailure, "GC could not release everything", r.errors.join("; "));
    }
  }
  async status(): Promise<void> {
    let free: bigint[];
    try {
      // What ADD reads must decode, and what ADD writes must be writable now.
      free = await this.#alloc.free();
      await this.#store.probeWrite?.();
    } catch (e) {
      throw new CniError(
        CniCode.NotAvailable,
        `store unusable, ADD would fail: ${(e as Error).message}`,
      );
    }
    const empty = free.findIndex((n) => n <= 0n);
    if (empty >= 0) {
      throw new CniError(
        CniCode.NotAvailable,
        `no free address in range set ${empty} of network ${this.ctx.conf.name}`,
      );
    }
  }
}

class AgentIpam implements IpamDriver {
  readonly #client: AgentClient;
  constructor(readonly ctx: IpamContext, socket: string) {
    this.#client = new AgentClient(socket, ctx.agent ? { transport: ctx.agent } : {});
  }
  async add(): Promise<IpamOutcome> {
    const env = this.ctx.env;
    const reqIps = requested(this.ctx);
    const r = await this.#client.allocate({
      network: this.ctx.conf.name,
      ...attachment(this.ctx),
      netns: env.netns,
      ...pod(this.ctx),
      ...(reqIps.length ? { requestedIPs: reqIps } : {}),
    });
    const ipam = this.ctx.conf.ipam as Extract<NetConf["ipam"], { mode: "agent" }>;
    return {
      ips: r.ips.map((i) => ({ address: i.address, ...(i.gateway ? { gateway: i.gateway } : {}) })),
      routes: [...(r.routes ?? []).map((rt) => ({ ...rt })), ...ipam.routes],
    };
  }
  async del(): Promise<void> {
    await this.#client.release({ network: this.ctx.conf.name, ...attachment(this.ctx) });
  }
  async check(prev: Result): Promise<void> {
    const r = await this.#client.check({ network: this.ctx.conf.name, ...attachment(this.ctx) });
    checkHeld(r.ips.map((i) => i.address.replace(/\/\d+$/, "")), prev, "the node agent");
  }
  async gc(valid: Attachment[]): Promise<void> {
    const r = await this.#client.gc({ network: this.ctx.conf.name, validAttachments: valid });
    if (r.errors.length) {
      throw new CniError(CniCode.IoFailure, "GC could not release everything", r.errors.join("; "));
    }
  }
  async status(): Promise<void> {
    let ready = false;
    let why = "";
    try {
      const s = await this.#client.status();
      ready = s.ready;
      why = s.message ?? "not ready";
    } catch (e) {
      why = (e as Error).message;
    }
    if (!ready) throw new CniError(CniCode.NotAvailable, `node agent cannot serve ADD: ${why}`);
  }
}

class DelegatedIpam implements IpamDriver {
  #stdin: Promise<string | undefined> | undefined;
  constructor(readonly ctx: IpamContext, readonly type: string) {}

  /**
   * The config to hand the delegate, in a version it speaks. Plugins older than spec
   * 1.1.0 (Debian's host-local 1.1.1) refuse a 1.1.0 config with error 1: ask the
   * delegate's VERSION and fall back to the newest version both sides support.
   * Undefined when the delegate speaks no version ohno supports.
   */
  #config(): Promise<string | undefined> {
    this.#stdin ??= (async () => {
      const want = this.ctx.conf.cniVersion;
      if (want !== "1.1.0") return this.ctx.stdin;
      const v = await execPlugin(
        this.type,
        "VERSION",
        JSON.stringify({ cniVersion: want }),
        this.ctx.env,
      )
        .catch(() => undefined) as { supportedVersions?: string[] } | undefined;
      const theirs = v?.supportedVersions ?? [];
      if (theirs.includes(want)) return this.ctx.stdin;
      const common = SUPPORTED_VERSIONS.filter((x) => theirs.includes(x)).at(-1);
      if (!common) return undefined;
      return JSON.stringify({ ...this.ctx.conf.raw, cniVersion: common });
    })();
    return this.#stdin;
  }

  async #exec(command: string, needs11 = false): Promise<unknown> {
    const stdin = await this.#config();
    if (stdin === undefined) {
      throw new CniError(
        CniCode.IncompatibleVersion,
        `IPAM plugin ${this.type} supports no CNI version ohno can speak to it`,
      );
    }
    // GC and STATUS exist from 1.1.0 on: a delegate that speaks only older versions has
    // nothing to collect and no status to report.
    if (needs11 && (JSON.parse(stdin) as { cniVersion?: string }).cniVersion !== "1.1.0") {
      return undefined;
    }
    return await execPlugin(this.type, command, stdin, this.ctx.env);
  }

  async add(): Promise<IpamOutcome> {
    const doc = await this.#exec("ADD");
    const r = parseResult(doc ?? {});
    if (!r.ips?.length) {
      throw new CniError(CniCode.Internal, `IPAM plugin ${this.type} returned no addresses`);
    }
    return {
      ips: r.ips.map((i) => ({ address: i.address, ...(i.gateway ? { gateway: i.gateway } : {}) })),
      routes: r.routes ?? [],
      ...(r.dns ? { dns: r.dns } : {}),
    };
  }
  async del(): Promise<void> {
    await this.#exec("DEL");
  }
  async check(): Promise<void> {
    await this.#exec("CHECK");
  }
  async gc(): Promise<void> {
    await this.#exec("GC", true);
  }
  async status(): Promise<void> {
    await this.#exec("STATUS", true);
  }
}

/** The driver for the config's `ipam` section. */
export function ipamFor(ctx: IpamContext): IpamDriver {
  const ipam = ctx.conf.ipam;
  switch (ipam.mode) {
    case "embedded":
      return new EmbeddedIpam(ctx, ipam);
    case "agent":
      return new AgentIpam(ctx, ipam.socket);
    case "delegate":
      return new DelegatedIpam(ctx, ipam.type);
  }
}
