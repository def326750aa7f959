/**
 * The verbs' orchestration without root: ADD, DEL and CHECK run against a fake mode
 * driver that records every call (and fails on demand at any step) and the embedded
 * IPAM on the memory store. Rollback order at each step, the error codes the typed
 * errors map to, DEL's idempotence, CHECK's codes. No namespace, link or file is touched.
 */
import { MemoryStore } from "../ipam/memory.ts";
import { IpamExhaustedError } from "../ipam/errors.ts";
import { Logger } from "../lib/log.ts";
import { IpError, IpExistsError, NetnsError, NetnsNotFoundError } from "../netns/errors.ts";
import { assert, assertEquals, assertMatch } from "../tests/support/assert.ts";
import { cmdAdd } from "./add.ts";
import { cmdCheck } from "./check.ts";
import { loadNetConf, type NetConf } from "./config.ts";
import type { PodVerbContext } from "./context.ts";
import { cmdDel } from "./del.ts";
import { cmdGc, cmdStatus } from "./gc.ts";
import type * as drv from "./driver.ts";
import { parseEnv } from "./env.ts";
import { CniCode, CniError } from "./errors.ts";
import { toCniError } from "./fail.ts";
import { EmbeddedIpam, type IpamDriver } from "./ipam.ts";
import { formatResult, type Result } from "./result.ts";

type Step =
  | "openPod"
  | "probe"
  | "prepare"
  | "setupHost"
  | "undoHost"
  | "setupPod"
  | "finish"
  | "detach"
  | "dropNetwork"
  | "podLink"
  | "podDefaultRoutes"
  | "hostProblem"
  | "collect"
  | "status";

const POD_MAC = "02:00:00:00:00:99";

/** Records every call in `calls` (IPAM's too); `fail[step]` is thrown at that step. */
class FakeDriver implements drv.ModeDriver {
  calls: string[] = [];
  fail: Partial<Record<Step, Error>> = {};
  probed: drv.Probe = { mtu: 1500, mtuOrigin: " (the uplink's)" };
  link: drv.PodLinkState | undefined = undefined;
  routes: Record<4 | 6, drv.RouteState[]> = { 4: [], 6: [] };
  problem: string | undefined = undefined;
  plans: drv.AddPlan[] = [];
  kept: string[] = [];
  collectFailures: unknown[] = [];

  #step(s: Step): void {
    this.calls.push(s);
    const e = this.fail[s];
    if (e) throw e;
  }
  openPod(path: string): drv.PodNs {
    this.#step("openPod");
    return { path, [Symbol.dispose]: () => void this.calls.push("closePod") };
  }
  probe(_pod: drv.PodNs, _att: drv.Attachment): Promise<drv.Probe> {
    this.#step("probe");
    return Promise.resolve(this.probed);
  }
  prepare(_addresses: drv.FamAddr[]): Promise<drv.PodRoute[]> {
    this.#step("prepare");
    return Promise.resolve([{ dst: "192.0.2.1/32" }]);
  }
  setupHost(_pod: drv.PodNs, plan: drv.AddPlan): Promise<drv.LinkReport[]> {
    this.#step("setupHost");
    this.plans.push(plan);
    return Promise.resolve([
      { name: "ohno0", mac: "02:00:00:00:00:01", mtu: plan.mtu },
      { name: "vethfake", mac: "02:00:00:00:00:02", mtu: plan.mtu },
    ]);
  }
  undoHost(_pod: drv.PodNs, _plan: drv.AddPlan): Promise<void> {
    this.#step("undoHost");
    return Promise.resolve();
  }
  setupPod(pod: drv.PodNs, plan: drv.AddPlan): Promise<drv.LinkReport> {
    this.#step("setupPod");
    return Promise.resolve({
      name: plan.att.ifname,
      mac: POD_MAC,
      sandbox: pod.path,
      mtu: plan.mtu,
    });
  }
  finish(_plan: drv.AddPlan): Promise<string | undefined> {
    this.#step("finish");
    return Promise.resolve("last");
  }
  describe(_att: drv.Attachment): Record<string, string> {
    return { fake: "yes" };
  }
  detach(att: drv.Attachment): Promise<Record<string, string>> {
    this.#step("detach");
    return Promise.resolve({ ifname: att.ifname });
  }
  dropNetwork(): Promise<void> {
    this.#step("dropNetwork");
    return Promise.resolve();
  }
  podLink(_pod: drv.PodNs, _ifname: string): Promise<drv.PodLinkState | undefined> {
    this.#step("podLink");
    return Promise.resolve(this.link);
  }
  podDefaultRoutes(_pod: drv.PodNs, family: 4 | 6): Promise<drv.RouteState[]> {
    this.#step("podDefaultRoutes");
    return Promise.resolve(this.routes[family]);
  }
  hostProblem(_att: drv.Attachment, _link: drv.PodLinkState): Promise<string | undefined> {
    this.#step("hostProblem");
    return Promise.resolve(this.problem);
  }
  collect(keep: { containerID: string; ifname: string }[]): Promise<unknown[]> {
    this.#step("collect");
    this.kept = keep.map((a) => `${a.containerID}/${a.ifname}`);
    return Promise.resolve(this.collectFailures);
  }
  status(): Promise<void> {
    this.#step("status");
    return Promise.resolve();
  }
  [Symbol.dispose](): void {}
}

/** IPAM that records `ipam.add` / `ipam.del` in the driver's call list. */
function recorded(inner: EmbeddedIpam, calls: string[]): IpamDriver {
  return {
    add: () => (calls.push("ipam.add"), inner.add()),
    del: () => (calls.push("ipam.del"), inner.del()),
    check: (prev) => inner.check(prev),
    gc: (valid) => inner.gc(valid),
    status: () => inner.status(),
    isEmpty: () => inner.isEmpty(),
  };
}

const BASE_CONF = {
  cniVersion: "1.1.0",
  name: "unit",
  type: "ohno",
  bridge: "ohno0",
  isGateway: true,
  ipam: {
    type: "ohno",
    ranges: [[{ subnet: "10.9.0.0/24" }], [{ subnet: "fd09::/64" }]],
  },
};

/** One node: a memory store and a fake driver shared by the verbs it runs. */
function node() {
  const store = new MemoryStore();
  const driver = new FakeDriver();
  const log = new Logger({ level: "error" }); // no file, no stderr: nowhere
  const ctx = (
    command: string,
    opts: { cid?: string; env?: Record<string, string>; conf?: Record<string, unknown> } = {},
  ): PodVerbContext => {
    const stdin = JSON.stringify({ ...BASE_CONF, ...opts.conf });
    const conf: NetConf = loadNetConf(stdin);
    const env = parseEnv({
      CNI_COMMAND: command,
      CNI_CONTAINERID: opts.cid ?? "ctr1",
      CNI_NETNS: "/var/run/netns/unit-pod",
      CNI_IFNAME: "eth0",
      CNI_PATH: "/usr/lib/cni",
      ...opts.env,
    });
    if (conf.ipam.mode !== "embedded") throw new Error("unit tests use embedded IPAM");
    const base = { env, conf, stdin, log };
    const ipam = recorded(new EmbeddedIpam(base, conf.ipam, store), driver.calls);
    return { ...base, driver, ipam };
  };
  const held = async (): Promise<boolean> => !(await ctx("DEL").ipam.isEmpty!());
  return { driver, ctx, held };
}

/** The CNI error a verb ends with, as runCni reports it (toCniError). */
async function failure(p: Promise<unknown>): Promise<CniError> {
  try {
    await p;
  } catch (e) {
    return toCniError(e);
  }
  throw new Error("the verb succeeded; a failure was expected");
}

const ADD_STEPS = ["openPod", "probe", "ipam.add", "prepare", "setupHost", "setupPod", "finish"];

Deno.test("ADD: driver steps in order, result from what the driver reports", async () => {
  const { driver, ctx, held } = node();
  const r = await cmdAdd(ctx("ADD", { env: { CNI_ARGS: `MAC=${POD_MAC.toUpperCase()}` } }));
  assertEquals(driver.calls, [...ADD_STEPS, "closePod"]);
  assertEquals(r.interfaces?.map((i) => i.name), ["ohno0", "vethfake", "eth0"]);
  assertEquals(r.interfaces?.[2]?.sandbox, "/var/run/netns/unit-pod");
  assertEquals(r.ips?.map((i) => [i.address, i.gateway, i.interface]), [
    ["10.9.0.2/24", "10.9.0.1", 2],
    ["fd09::2/64", "fd09::1", 2],
  ]);
  // default routes per family, then the mode's own (prepare's)
  assertEquals(r.routes, [
    { dst: "0.0.0.0/0", gw: "10.9.0.1" },
    { dst: "::/0", gw: "fd09::1" },
    { dst: "192.0.2.1/32" },
  ]);
  const plan = driver.plans[0]!;
  assertEquals(plan.podMac, POD_MAC);
  assertEquals(plan.mtu, 1500);
  assertEquals(plan.gateways.map((g) => g.cidr), ["10.9.0.1/24", "fd09::1/64"]);
  assert(await held(), "IPAM holds the addresses after ADD");
});

/**
 * A failure at each step: what ran, in which order (the host side undone before the
 * addresses are released, the pod namespace closed last), the code, nothing held.
 */
const ROLLBACKS: {
  at: string;
  fail?: [Step, Error];
  fault?: string;
  code: number;
  calls: string[];
}[] = [
  {
    at: "probe",
    fail: ["probe", new CniError(CniCode.InvalidConfig, "bad bridge")],
    code: 7,
    calls: ["openPod", "probe"],
  },
  {
    at: "openPod",
    fail: ["openPod", new NetnsNotFoundError("/var/run/netns/unit-pod")],
    code: 4,
    calls: ["openPod"],
  },
  {
    at: "after-ipam",
    fault: "after-ipam",
    code: 999,
    calls: ["openPod", "probe", "ipam.add", "ipam.del"],
  },
  {
    at: "prepare",
    fail: ["prepare", new CniError(CniCode.InvalidConfig, "route taken")],
    code: 7,
    calls: ["openPod", "probe", "ipam.add", "prepare", "ipam.del"],
  },
  {
    at: "setupHost",
    fail: ["setupHost", new IpExistsError("link add vethfake", "File exists", 2)],
    code: 999,
    calls: [...ADD_STEPS.slice(0, 5), "undoHost", "ipam.del"],
  },
  {
    at: "after-host",
    fault: "after-host",
    code: 999,
    calls: [...ADD_STEPS.slice(0, 5), "undoHost", "ipam.del"],
  },
  {
    at: "setupPod",
    fail: ["setupPod", new NetnsError("cannot enter")],
    code: 999,
    calls: [...ADD_STEPS.slice(0, 6), "undoHost", "ipam.del"],
  },
  {
    at: "after-pod",
    fault: "after-pod",
    code: 999,
    calls: [...ADD_STEPS.slice(0, 6), "undoHost", "ipam.del"],
  },
  {
    at: "finish",
    fail: ["finish", new IpError("add table", "no nft", 1)],
    code: 999,
    calls: [...ADD_STEPS, "undoHost", "ipam.del"],
  },
];

for (const c of ROLLBACKS) {
  Deno.test(`ADD rollback: failure at ${c.at} → code ${c.code}, undone in order`, async () => {
    const { driver, ctx, held } = node();
    if (c.fail) driver.fail[c.fail[0]] = c.fail[1];
    const env = c.fault ? { OHNO_TEST_FAULT: c.fault } : {};
    const err = await failure(cmdAdd(ctx("ADD", { env })));
    assertEquals(err.code, c.code, err.message);
    const closed = c.at === "openPod" ? [] : ["closePod"];
    assertEquals(driver.calls, [...c.calls, ...closed]);
    assertEquals(await held(), false, "the addresses are released");
  });
}

Deno.test("ADD rollback: a failing host undo still releases the addresses; the first error is reported", async () => {
  const { driver, ctx, held } = node();
  driver.fail.setupPod = new CniError(CniCode.Internal, "pod side broke");
  driver.fail.undoHost = new Error("undo broke too");
  const err = await failure(cmdAdd(ctx("ADD")));
  assertEquals([err.code, err.message], [999, "pod side broke"]);
  assertEquals(driver.calls.slice(-3), ["undoHost", "ipam.del", "closePod"]);
  assertEquals(await held(), false);
});

Deno.test("ADD: an IPv6 address with an MTU below 1280 is error 7 naming where the MTU came from, after IPAM, released", async () => {
  const { driver, ctx, held } = node();
  driver.probed = { mtu: 1200, mtuOrigin: " (the uplink's)" };
  const err = await failure(cmdAdd(ctx("ADD")));
  assertEquals(err.code, 7);
  assertMatch(err.message, /mtu 1200 \(the uplink's\) is below 1280.*fd09::2\/64/);
  assertEquals(driver.calls, ["openPod", "probe", "ipam.add", "prepare", "ipam.del", "closePod"]);
  assertEquals(await held(), false);
});

Deno.test("ADD: IPAM's typed errors map to 100, 101 and 102; a refused second ADD keeps the first's addresses", async () => {
  const { driver, ctx, held } = node();
  await cmdAdd(ctx("ADD"));
  driver.calls = [];
  const again = await failure(cmdAdd(ctx("ADD")));
  assertEquals(again.code, 101, again.message);
  assertEquals(driver.calls, ["openPod", "probe", "ipam.add", "closePod"]);
  assert(await held(), "the first ADD's addresses are still held");

  const outside = await failure(
    cmdAdd(ctx("ADD", { cid: "ctr2", env: { CNI_ARGS: "IP=10.8.0.5" } })),
  );
  assertEquals(outside.code, 102, outside.message);

  const tiny = { ipam: { type: "ohno", ranges: [[{ subnet: "10.7.0.0/30" }]] } };
  const t = node();
  await cmdAdd(t.ctx("ADD", { cid: "a", conf: tiny }));
  const full = await failure(cmdAdd(t.ctx("ADD", { cid: "b", conf: tiny })));
  assertEquals(full.code, 100, full.message);
  assertEquals(toCniError(new IpamExhaustedError("x")).code, 100);
});

Deno.test("DEL: detach then release; again and again succeeds; errors are gathered, IPAM still released", async () => {
  const { driver, ctx, held } = node();
  await cmdAdd(ctx("ADD"));
  driver.calls = [];
  await cmdDel(ctx("DEL"));
  assertEquals(driver.calls, ["detach", "ipam.del"]);
  assertEquals(await held(), false);
  await cmdDel(ctx("DEL"));
  await cmdDel(ctx("DEL", { env: { CNI_NETNS: "" } }));
  assertEquals(driver.calls.length, 6, "every DEL detaches and releases");

  await cmdAdd(ctx("ADD"));
  driver.calls = [];
  driver.fail.detach = new IpError("link del dev vethfake", "Operation not permitted", 2);
  const err = await failure(cmdDel(ctx("DEL")));
  assertEquals(err.code, 999);
  assertMatch(err.message, /link del dev vethfake/);
  assertEquals(driver.calls, ["detach", "ipam.del"]);
  assertEquals(await held(), false, "released although the detach failed");
});

Deno.test("DEL with ipMasq: the network-wide rules go with the network's last address only", async () => {
  const { driver, ctx } = node();
  const conf = { ipMasq: true };
  await cmdAdd(ctx("ADD", { cid: "a", conf }));
  await cmdAdd(ctx("ADD", { cid: "b", conf }));
  driver.calls = [];
  await cmdDel(ctx("DEL", { cid: "a", conf }));
  assertEquals(driver.calls, ["detach", "ipam.del"]);
  await cmdDel(ctx("DEL", { cid: "b", conf }));
  assertEquals(driver.calls.slice(2), ["detach", "ipam.del", "dropNetwork"]);
  // a DEL that failed keeps them
  await cmdAdd(ctx("ADD", { cid: "c", conf }));
  driver.calls = [];
  driver.fail.detach = new CniError(CniCode.Internal, "no");
  await failure(cmdDel(ctx("DEL", { cid: "c", conf })));
  assertEquals(driver.calls, ["detach", "ipam.del"]);
});

Deno.test("CHECK: passes as ADD left it; 1, 7 and 103 (naming what differs) otherwise", async () => {
  const { driver, ctx } = node();
  const added: Result = await cmdAdd(ctx("ADD"));
  const prevResult = formatResult(added, "1.1.0");
  const conf = { prevResult };
  const good = (): drv.PodLinkState => ({
    mac: POD_MAC,
    addresses: ["10.9.0.2/24", "fd09::2/64", "fe80::1/64"],
    kind: "veth",
  });
  const routesOk = {
    4: [{ gateway: "10.9.0.1", dev: "eth0" }],
    6: [{ gateway: "fd09::1", dev: "eth0" }],
  };
  const check = async (set: () => void): Promise<CniError | undefined> => {
    driver.link = good();
    driver.routes = structuredClone(routesOk);
    driver.problem = undefined;
    driver.fail = {};
    set();
    try {
      await cmdCheck(ctx("CHECK", { conf }));
      return undefined;
    } catch (e) {
      return toCniError(e);
    }
  };

  driver.calls = [];
  assertEquals(await check(() => {}), undefined);
  assertEquals(driver.calls, [
    "openPod",
    "podLink",
    "podDefaultRoutes",
    "podDefaultRoutes",
    "hostProblem",
    "closePod",
  ]);

  const cases: [string, () => void, number, RegExp][] = [
    ["interface gone", () => (driver.link = undefined), 103, /interface eth0 is missing/],
    [
      "address gone",
      () => (driver.link!.addresses = ["10.9.0.2/24"]),
      103,
      /address fd09::2\/64 is missing from eth0/,
    ],
    ["other MAC", () => (driver.link!.mac = "02:00:00:00:00:98"), 103, /has MAC 02:00:00:00:00:98/],
    [
      "IPv6 default route gone",
      () => (driver.routes[6] = []),
      103,
      /default route via fd09::1 dev eth0 is missing/,
    ],
    ["host side differs", () => (driver.problem = "host veth v is missing"), 103, /host veth v/],
    [
      "node no longer fits",
      () => (driver.fail.hostProblem = new CniError(CniCode.InvalidConfig, "master gone")),
      7,
      /master gone/,
    ],
  ];
  for (const [what, set, code, re] of cases) {
    const err = await check(set);
    assertEquals(err?.code, code, what);
    assertMatch(err!.message, re);
  }

  const old = await failure(cmdCheck(ctx("CHECK", { conf: { ...conf, cniVersion: "0.3.1" } })));
  assertEquals(old.code, 1);
  const noPrev = await failure(cmdCheck(ctx("CHECK")));
  assertEquals([noPrev.code, noPrev.message], [
    7,
    "invalid network config: CHECK needs prevResult",
  ]);

  // IPAM no longer holds the addresses: 103 from IPAM, after the driver's checks
  await cmdDel(ctx("DEL"));
  const released = await check(() => {});
  assertEquals(released?.code, 103);
  assertMatch(released!.message, /does not hold 10\.9\.0\.2/);
});

Deno.test("GC: the driver collects all but the valid attachments, its failures join IPAM's as error 5; STATUS: a driver refusal is 50", async () => {
  const { driver, ctx, held } = node();
  await cmdAdd(ctx("ADD", { cid: "a" }));
  const valid = { "cni.dev/valid-attachments": [{ containerID: "a", ifname: "eth0" }] };
  driver.calls = [];
  await cmdGc(ctx("GC", { conf: valid }), { hostSide: true });
  assertEquals([driver.calls, driver.kept], [["collect"], ["a/eth0"]]);
  assertEquals(await held(), true, "the valid attachment keeps its address");

  driver.collectFailures = [new IpError("link del vethstale", "Operation not permitted", 2)];
  const err = await failure(cmdGc(ctx("GC"), { hostSide: true }));
  assertEquals([err.code, err.message], [CniCode.IoFailure, "GC finished with errors"]);
  assertMatch(err.details ?? "", /link del vethstale/);
  assertEquals([driver.kept, await held()], [[], false], "no valid attachment: released");

  await cmdStatus(ctx("STATUS"));
  driver.fail.status = new CniError(CniCode.InvalidConfig, 'invalid network config: master "x"');
  const st = await failure(cmdStatus(ctx("STATUS")));
  assertEquals([st.code, st.message], [
    CniCode.NotAvailable,
    'ADD would fail: invalid network config: master "x"',
  ]);
});
