import { assert, assertEquals } from "../../tests/support/assert.ts";
import {
  applyPeerEvents,
  defaultMetric,
  kernelRouteOf,
  type PeerEvent,
  planRoutes,
  wantedRoutes,
} from "./diff.ts";
import type { KernelRoute, LocalNode, Peer, WantedRoute } from "./types.ts";

const OWN = ["111"];
const local: LocalNode = {
  node: "n1",
  ips: ["172.31.0.11", "fd00:172:31::11"],
  blocks: ["10.244.1.0/24", "fd10:244:0:1::/64"],
};
const n2: Peer = {
  node: "n2",
  ips: ["172.31.0.12", "fd00:172:31::12"],
  blocks: ["10.244.2.0/24", "fd10:244:0:2::/64"],
};
const n3: Peer = { node: "n3", ips: ["172.31.0.13"], blocks: ["10.244.3.0/24"] };

/** A kernel table that applies plans the way `ip route replace/del` would. */
function applyPlan(kernel: KernelRoute[], plan: ReturnType<typeof planRoutes>): KernelRoute[] {
  let out = kernel.filter((k) =>
    !plan.delete.some((d) =>
      d.dst === k.dst && d.metric === k.metric && d.protocol === k.protocol && d.via === k.via
    )
  );
  for (const w of [...plan.add, ...plan.replace]) {
    const metric = defaultMetric(w.family);
    out = out.filter((k) => !(k.dst === w.dst && k.metric === metric));
    out.push({ family: w.family, dst: w.dst, via: w.via, metric, protocol: "111" });
  }
  return out;
}

const brief = (rs: { dst: string; via?: string }[]) => rs.map((r) => `${r.dst}>${r.via}`).sort();

interface Step {
  events: PeerEvent[];
  /** Something outside ohno changes the kernel before this step's reconcile. */
  meddle?: (k: KernelRoute[]) => KernelRoute[];
  add?: string[];
  replace?: string[];
  delete?: string[];
  conflicts?: string[];
  skipped?: string[];
  /** Routes of ohno's in the kernel after the step. */
  ours: string[];
}

const cases: { name: string; kernel?: KernelRoute[]; steps: Step[] }[] = [
  {
    name: "a new peer's blocks are added in both families, then removed with it",
    steps: [
      {
        events: [{ type: "put", peer: n2 }],
        add: ["10.244.2.0/24>172.31.0.12", "fd10:244:0:2::/64>fd00:172:31::12"],
        ours: ["10.244.2.0/24>172.31.0.12", "fd10:244:0:2::/64>fd00:172:31::12"],
      },
      {
        events: [{ type: "put", peer: n2 }],
        ours: ["10.244.2.0/24>172.31.0.12", "fd10:244:0:2::/64>fd00:172:31::12"],
      },
      {
        events: [{ type: "delete", node: "n2" }],
        delete: ["10.244.2.0/24>172.31.0.12", "fd10:244:0:2::/64>fd00:172:31::12"],
        ours: [],
      },
    ],
  },
  {
    name: "a peer that moved to a new address gets its routes replaced",
    steps: [
      {
        events: [{ type: "put", peer: n3 }],
        add: ["10.244.3.0/24>172.31.0.13"],
        ours: ["10.244.3.0/24>172.31.0.13"],
      },
      {
        events: [{ type: "put", peer: { ...n3, ips: ["172.31.0.33"] } }],
        replace: ["10.244.3.0/24>172.31.0.33"],
        ours: ["10.244.3.0/24>172.31.0.33"],
      },
    ],
  },
  {
    name: "a route deleted by hand comes back on the next reconcile",
    steps: [
      {
        events: [{ type: "put", peer: n3 }],
        add: ["10.244.3.0/24>172.31.0.13"],
        ours: ["10.244.3.0/24>172.31.0.13"],
      },
      {
        events: [],
        meddle: (k) => k.filter((r) => r.dst !== "10.244.3.0/24"),
        add: ["10.244.3.0/24>172.31.0.13"],
        ours: ["10.244.3.0/24>172.31.0.13"],
      },
    ],
  },
  {
    name: "after a restart, routes of peers that vanished meanwhile are removed (reset)",
    kernel: [
      { family: 4, dst: "10.244.9.0/24", via: "172.31.0.19", metric: 0, protocol: "111" },
      { family: 4, dst: "10.244.3.0/24", via: "172.31.0.13", metric: 0, protocol: "111" },
    ],
    steps: [{
      events: [{ type: "reset", peers: [n3] }],
      delete: ["10.244.9.0/24>172.31.0.19"],
      ours: ["10.244.3.0/24>172.31.0.13"],
    }],
  },
  {
    name: "foreign routes are never touched, even for a wanted destination",
    kernel: [
      { family: 4, dst: "10.244.2.0/24", via: "172.31.0.99", metric: 0, protocol: "static" },
      { family: 4, dst: "10.99.0.0/16", via: "172.31.0.1", metric: 0, protocol: "boot" },
      { family: 4, dst: "172.31.0.0/24", dev: "eth0", metric: 0, protocol: "kernel" },
    ],
    steps: [{
      events: [{ type: "put", peer: n2 }],
      add: ["fd10:244:0:2::/64>fd00:172:31::12"],
      conflicts: ["10.244.2.0/24>172.31.0.12"],
      ours: ["fd10:244:0:2::/64>fd00:172:31::12"],
    }],
  },
  {
    name: "the local node, overlapping blocks, missing families and double claims are skipped",
    steps: [{
      events: [
        { type: "put", peer: { ...local } },
        {
          type: "put",
          peer: {
            node: "n4",
            ips: ["172.31.0.14"],
            blocks: ["10.244.1.128/25", "fd10:244:0:4::/64", "nonsense"],
          },
        },
        { type: "put", peer: { node: "n0", ips: ["172.31.0.10"], blocks: ["10.244.5.0/24"] } },
        { type: "put", peer: { node: "n5", ips: ["172.31.0.15"], blocks: ["10.244.5.0/24"] } },
      ],
      add: ["10.244.5.0/24>172.31.0.10"],
      skipped: [
        "n4 10.244.1.128/25: overlaps 10.244.1.0/24 of this node (n1)",
        "n4 fd10:244:0:4::/64: node has no IPv6 address",
        "n4 nonsense: not a CIDR",
        "n5 10.244.5.0/24: also claimed by node n0",
      ],
      ours: ["10.244.5.0/24>172.31.0.10"],
    }],
  },
  {
    name: "a stray duplicate of ohno's with another metric is removed; the right one stays",
    kernel: [
      {
        family: 6,
        dst: "fd10:244:0:2::/64",
        via: "fd00:172:31::12",
        metric: 1024,
        protocol: "111",
      },
      { family: 6, dst: "fd10:244:0:2::/64", via: "fd00:172:31::99", metric: 5, protocol: "111" },
    ],
    steps: [{
      events: [{ type: "put", peer: n2 }],
      add: ["10.244.2.0/24>172.31.0.12"],
      delete: ["fd10:244:0:2::/64>fd00:172:31::99"],
      ours: ["10.244.2.0/24>172.31.0.12", "fd10:244:0:2::/64>fd00:172:31::12"],
    }],
  },
];

for (const c of cases) {
  Deno.test(`route plan: ${c.name}`, () => {
    let peers = new Map<string, Peer>();
    let kernel = [...(c.kernel ?? [])];
    const foreignBefore = kernel.filter((k) => !OWN.includes(k.protocol));
    c.steps.forEach((step, i) => {
      peers = applyPeerEvents(peers, step.events).peers;
      if (step.meddle) kernel = step.meddle(kernel);
      const { routes, skipped } = wantedRoutes({ local, peers: [...peers.values()] });
      const plan = planRoutes(routes, kernel, OWN);
      const at = `step ${i}`;
      assertEquals(brief(plan.add), (step.add ?? []).sort(), `${at}: add`);
      assertEquals(brief(plan.replace), (step.replace ?? []).sort(), `${at}: replace`);
      assertEquals(brief(plan.delete), (step.delete ?? []).sort(), `${at}: delete`);
      assertEquals(
        brief(plan.conflicts.map((x) => x.route)),
        (step.conflicts ?? []).sort(),
        `${at}: conflicts`,
      );
      assertEquals(
        skipped.map((s) => `${s.node} ${s.block}: ${s.reason}`).sort(),
        (step.skipped ?? []).sort(),
        `${at}: skipped`,
      );
      kernel = applyPlan(kernel, plan);
      assertEquals(
        brief(kernel.filter((k) => OWN.includes(k.protocol))),
        step.ours.sort(),
        `${at}: kernel`,
      );
      // Converged: planning again changes nothing.
      const again = planRoutes(routes, kernel, OWN);
      assertEquals(
        again.add.length + again.replace.length + again.delete.length,
        0,
        `${at}: converged`,
      );
    });
    // Foreign routes are exactly as they were.
    assertEquals(kernel.filter((k) => !OWN.includes(k.protocol)), foreignBefore);
  });
}

Deno.test("peer events report whether anything changed", () => {
  const start = applyPeerEvents(new Map(), [{ type: "put", peer: n2 }]);
  assert(start.changed);
  assertEquals(
    applyPeerEvents(start.peers, [{
      type: "put",
      peer: { ...n2, blocks: [...n2.blocks].reverse() },
    }]).changed,
    false,
  );
  assertEquals(applyPeerEvents(start.peers, [{ type: "delete", node: "nope" }]).changed, false);
  assertEquals(applyPeerEvents(start.peers, [{ type: "reset", peers: [n2] }]).changed, false);
  assert(applyPeerEvents(start.peers, [{ type: "reset", peers: [n3] }]).changed);
  assert(
    applyPeerEvents(start.peers, [{ type: "put", peer: { ...n2, ips: [...n2.ips].reverse() } }])
      .changed,
  );
  // put then delete of the same node in one list ends where it started but did change.
  const pd = applyPeerEvents(start.peers, [{ type: "put", peer: n3 }, {
    type: "delete",
    node: "n3",
  }]);
  assertEquals([...pd.peers.keys()], ["n2"]);
  // The input map is never modified.
  assertEquals([...start.peers.keys()], ["n2"]);
});

Deno.test("the protocol may also be known by a name an administrator gave it", () => {
  const kernel: KernelRoute[] = [{
    family: 4,
    dst: "10.244.7.0/24",
    via: "172.31.0.17",
    metric: 0,
    protocol: "ohno",
  }];
  const plan = planRoutes([], kernel, ["111", "ohno"]);
  assertEquals(brief(plan.delete), ["10.244.7.0/24>172.31.0.17"]);
});

Deno.test("kernel routes are normalised from ip's JSON", () => {
  assertEquals(kernelRouteOf(4, { dst: "default", gateway: "172.31.0.1", dev: "eth0" }), {
    family: 4,
    dst: "0.0.0.0/0",
    via: "172.31.0.1",
    dev: "eth0",
    metric: 0,
    protocol: "boot",
  });
  assertEquals(
    kernelRouteOf(4, { dst: "10.244.3.5", protocol: "111", type: "blackhole" })?.dst,
    "10.244.3.5/32",
  );
  assertEquals(
    kernelRouteOf(4, { dst: "10.244.3.5", protocol: "111", type: "blackhole" })?.type,
    "blackhole",
  );
  const v6 = kernelRouteOf(6, {
    dst: "fd10:244:0:2:0::/64",
    gateway: "FD00:172:31:0::12",
    metric: 1024,
    protocol: "111",
  });
  assertEquals([v6?.dst, v6?.via, v6?.metric], ["fd10:244:0:2::/64", "fd00:172:31::12", 1024]);
  assertEquals(kernelRouteOf(4, { dst: "fe80::/64" }), undefined);
});

Deno.test("wanted routes use the first address of each family and canonical CIDRs", () => {
  const { routes } = wantedRoutes({
    local,
    peers: [{
      node: "n2",
      ips: ["fd00:172:31:0::12", "172.31.0.12", "172.31.0.99"],
      blocks: ["10.244.2.7/24", "FD10:244:0:2::/64"],
    }],
  });
  assertEquals(
    routes,
    [
      { family: 4, dst: "10.244.2.0/24", via: "172.31.0.12", node: "n2" },
      { family: 6, dst: "fd10:244:0:2::/64", via: "fd00:172:31::12", node: "n2" },
    ] satisfies WantedRoute[],
  );
});
