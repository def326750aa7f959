/**
 * Negative paths of the plugin with embedded IPAM, each with its exact outcome: CHECK
 * finds every kind of drift (error 103 saying what), GC releases exactly the invalid
 * attachments' addresses and host veths and keeps the valid ones, and the 15/16-character
 * CNI_IFNAME boundary.
 */
import { assert, assertEquals, assertStringIncludes } from "./support/assert.ts";
import { cniNode } from "./support/cni.ts";
import type { CniReply } from "./support/ohno.ts";
import { ip, ipJson, type IpLink } from "../netns/ip.ts";
import type { Netns } from "../netns/netns.ts";

interface Added {
  /** Addresses with prefix, IPv4 first. */
  ips: string[];
  hostVeth: string;
  result: Record<string, unknown>;
}

function added(r: CniReply): Added {
  const ips = (r.json?.ips as { address: string }[]).map((i) => i.address);
  const ifaces = r.json?.interfaces as { name: string; sandbox?: string }[];
  const host = ifaces.find((i) => i.name.startsWith("veth") && i.sandbox === undefined);
  assert(host, `no host veth in ${JSON.stringify(r.json)}`);
  return { ips, hostVeth: host.name, result: r.json! };
}

const bare = (cidr: string) => cidr.replace(/\/\d+$/, "");

async function links(ns: Netns): Promise<string[]> {
  return (await ipJson<IpLink[]>(["link", "show"], { netns: ns })).map((l) => l.ifname).sort();
}

/** CHECK cases: what to break after ADD, and what the error message must say. */
const DRIFT: {
  name: string;
  brk: (a: Added, pod: Netns, host: Netns) => Promise<unknown>;
  says: (a: Added) => string;
}[] = [
  {
    name: "a removed pod address",
    brk: (a, pod) => ip(["addr", "del", a.ips[0]!, "dev", "eth0"], { netns: pod }),
    says: (a) => `address ${a.ips[0]} is missing from eth0`,
  },
  {
    name: "a removed IPv6 pod address",
    brk: (a, pod) => ip(["-6", "addr", "del", a.ips[1]!, "dev", "eth0"], { netns: pod }),
    says: (a) => `address ${a.ips[1]} is missing from eth0`,
  },
  {
    name: "a removed default route",
    brk: (_a, pod) => ip(["-4", "route", "del", "default"], { netns: pod }),
    says: () => "default route via 10.88.0.1 dev eth0 is missing",
  },
  {
    name: "a removed IPv6 default route",
    brk: (_a, pod) => ip(["-6", "route", "del", "default"], { netns: pod }),
    says: () => "default route via fd00:88::1 dev eth0 is missing",
  },
  {
    name: "a changed MAC",
    brk: (_a, pod) => ip(["link", "set", "eth0", "address", "02:00:00:00:be:ef"], { netns: pod }),
    says: () => "eth0 has MAC 02:00:00:00:be:ef",
  },
  {
    name: "the host veth moved off its bridge",
    brk: (a, _pod, host) => ip(["link", "set", a.hostVeth, "nomaster"], { netns: host }),
    says: (a) => `host veth ${a.hostVeth} is not on bridge ohno0`,
  },
  {
    name: "the host veth deleted (and the pod end with it)",
    brk: (a, _pod, host) => ip(["link", "del", a.hostVeth], { netns: host }),
    says: () => "interface eth0 is missing",
  },
];

Deno.test("CHECK: each kind of drift after ADD is error 103 saying what changed", async (t) => {
  for (const [i, c] of DRIFT.entries()) {
    await t.step(c.name, async () => {
      // A node of its own per case: one case's failure cannot spill into the next.
      await using node = await cniNode({ network: `checkneg${i}` });
      const clean = await node.state();
      const pod = await node.pod("ck");
      const cid = `check-drift-${i}`;
      const a = added(await node.add(pod, cid));
      const check = () =>
        node.call({
          command: "CHECK",
          containerID: cid,
          netns: pod.path,
          ifname: "eth0",
          config: node.conf("1.0.0", { prevResult: a.result }),
        });
      // Untouched, CHECK passes: the failure below is the drift, not CHECK itself.
      const ok = await check();
      assertEquals([ok.code, ok.stdout], [0, ""], ok.stdout);
      await c.brk(a, pod.ns, node.host.ns);
      const r = await check();
      assertEquals([r.code, r.json?.code], [1, 103], r.stdout);
      assertStringIncludes(String(r.json?.msg), c.says(a));
      // DEL still cleans up whatever is left.
      const d = await node.del(pod, cid);
      assertEquals([d.code, d.stdout], [0, ""], d.stdout);
      const s = await node.state();
      assertEquals(s.allocations, []);
      assertEquals(s.links.filter((l) => !clean.links.includes(l)), [node.bridge]);
    });
  }
});

Deno.test("GC releases exactly the invalid attachments' addresses and host veths", async (t) => {
  await using node = await cniNode({ network: "gcneg" });
  const pods = [await node.pod("ga"), await node.pod("gb"), await node.pod("gc")];
  const cids = ["gc-keep-a", "gc-drop-b", "gc-keep-c"];
  const a: Added[] = [];
  for (const [i, p] of pods.entries()) a.push(added(await node.add(p, cids[i]!)));
  const [keepA, dropB, keepC] = a as [Added, Added, Added];
  const gc = (valid: unknown[] | undefined) =>
    node.call({
      command: "GC",
      config: node.conf("1.1.0", valid ? { "cni.dev/valid-attachments": valid } : {}),
    });

  await t.step("B is not valid: its two addresses and its veth go, A's and C's stay", async () => {
    const r = await gc([
      { containerID: "gc-keep-a", ifname: "eth0" },
      { containerID: "gc-keep-c", ifname: "eth0" },
    ]);
    assertEquals([r.code, r.stdout], [0, ""], r.stdout);
    assertEquals(node.allocations(), [...keepA.ips, ...keepC.ips].map(bare).sort());
    const host = await links(node.host.ns);
    assert(!host.includes(dropB.hostVeth), `${dropB.hostVeth} still there: ${host}`);
    assert(host.includes(keepA.hostVeth) && host.includes(keepC.hostVeth), host.join(","));
    assertEquals(await links(pods[1]!.ns), ["lo"], "B's pod end went with its host end");
    assertEquals(await links(pods[0]!.ns), ["eth0", "lo"]);
    assertEquals(await links(pods[2]!.ns), ["eth0", "lo"]);
  });

  await t.step("the older key cni.dev/attachments is honoured the same way", async () => {
    const r = await node.call({
      command: "GC",
      config: node.conf("1.1.0", {
        "cni.dev/attachments": [{ containerID: "gc-keep-c", ifname: "eth0" }],
      }),
    });
    assertEquals([r.code, r.stdout], [0, ""], r.stdout);
    assertEquals(node.allocations(), keepC.ips.map(bare).sort());
    const host = await links(node.host.ns);
    assert(!host.includes(keepA.hostVeth), host.join(","));
    assert(host.includes(keepC.hostVeth), host.join(","));
  });

  await t.step("no list at all (cnitool): everything is released", async () => {
    const r = await gc(undefined);
    assertEquals([r.code, r.stdout], [0, ""], r.stdout);
    assertEquals(node.allocations(), []);
    const host = await links(node.host.ns);
    assertEquals(host.filter((l) => l.startsWith("veth")), []);
    assert(host.includes(node.bridge), "the bridge stays");
  });
});

Deno.test("CNI_IFNAME: 15 characters work, 16 are error 4 naming CNI_IFNAME", async (t) => {
  await using node = await cniNode({ network: "ifnamelim" });
  const pod = await node.pod();
  const clean = await node.state();
  const fifteen = "eth-fifteen-chr";
  const sixteen = "eth-sixteen-char";
  assertEquals([fifteen.length, sixteen.length], [15, 16]);

  await t.step("15: ADD creates it in the pod, DEL removes everything", async () => {
    await node.add(pod, "ifname15", "1.0.0", fifteen);
    assertEquals(await links(pod.ns), [fifteen, "lo"].sort());
    assertEquals(node.allocations().length, 2);
    const d = await node.del(pod, "ifname15", "1.0.0", fifteen);
    assertEquals([d.code, d.stdout], [0, ""], d.stdout);
    assertEquals(await links(pod.ns), ["lo"]);
    const s = await node.state();
    assertEquals(s.allocations, []);
    assertEquals(s.links.filter((l) => !clean.links.includes(l)), [node.bridge]);
  });

  await t.step("16: error 4 naming CNI_IFNAME, nothing created", async () => {
    const before = await node.state();
    const r = await node.call({
      command: "ADD",
      containerID: "ifname16",
      netns: pod.path,
      ifname: sixteen,
      config: node.conf(),
    });
    assertEquals([r.code, r.json?.code], [1, 4], r.stdout);
    assertStringIncludes(String(r.json?.msg), "CNI_IFNAME");
    assertEquals(await node.state(), before);
    assertEquals(await links(pod.ns), ["lo"]);
  });
});
