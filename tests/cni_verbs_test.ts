/**
 * Every verb × every supported version, through dist/ohno as a runtime calls it: the
 * result shape per version, CHECK/GC/STATUS gated by version, and nothing left behind.
 */
import { assert, assertEquals } from "./support/assert.ts";
import { cniNode } from "./support/cni.ts";
import { OHNO_IPAM } from "./support/ohno.ts";

const VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
const before = (a: string, b: string) => a.localeCompare(b, undefined, { numeric: true }) < 0;

for (const v of VERSIONS) {
  Deno.test(`verbs at cniVersion ${v}: ADD shape, CHECK, STATUS, GC, DEL`, async (t) => {
    await using node = await cniNode({ network: `verbs${v.replaceAll(".", "")}` });
    const pod = await node.pod();
    const cid = `verbs-${v}`;
    const clean = await node.state();
    let added: Record<string, unknown> = {};

    await t.step("ADD returns the result for this version", async () => {
      const r = await node.add(pod, cid, v);
      const res = r.json!;
      added = res;
      assertEquals(res.cniVersion, v);
      const ifaces = res.interfaces as Record<string, unknown>[];
      assertEquals(ifaces.map((i) => i.name).slice(0, 1), [node.bridge]);
      assertEquals(ifaces[2]?.name, "eth0");
      assertEquals(ifaces[2]?.sandbox, pod.path);
      assertEquals(ifaces[1]?.sandbox, undefined);
      for (const i of ifaces) assert(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(String(i.mac)));
      // 1.1-only interface fields appear only in 1.1.0
      assertEquals(ifaces.every((i) => typeof i.mtu === "number"), v === "1.1.0");
      const ips = res.ips as Record<string, unknown>[];
      assertEquals(ips.length, 2);
      for (const ip of ips) {
        assertEquals(ip.interface, 2);
        const fam = String(ip.address).includes(":") ? "6" : "4";
        // ips[].version in 0.3.x and 0.4.0, none in 1.x
        assertEquals(ip.version, before(v, "1.0.0") ? fam : undefined);
      }
      assertEquals((res.routes as { dst: string }[]).map((r) => r.dst), ["0.0.0.0/0", "::/0"]);
    });

    await t.step("CHECK: version 0.4.0+ passes with prevResult, older is error 1", async () => {
      const r = await node.call({
        command: "CHECK",
        containerID: cid,
        netns: pod.path,
        ifname: "eth0",
        config: node.conf(v, { prevResult: added }),
      });
      if (before(v, "0.4.0")) {
        assertEquals(r.json?.code, 1);
      } else {
        assertEquals([r.code, r.stdout], [0, ""], r.stdout + r.stderr);
      }
    });

    await t.step("STATUS: 1.1.0 answers 0 with no output, older is error 1", async () => {
      const r = await node.call({ command: "STATUS", config: node.conf(v) });
      if (v === "1.1.0") assertEquals([r.code, r.stdout], [0, ""], r.stdout);
      else assertEquals(r.json?.code, 1);
    });

    await t.step("GC: 1.1.0 keeps the valid attachment, older is error 1", async () => {
      const r = await node.call({
        command: "GC",
        config: node.conf(v, {
          "cni.dev/valid-attachments": [{ containerID: cid, ifname: "eth0" }],
        }),
      });
      if (v === "1.1.0") assertEquals([r.code, r.stdout], [0, ""], r.stdout);
      else assertEquals(r.json?.code, 1);
      assertEquals(node.allocations().length, 2);
    });

    await t.step("DEL succeeds, prints nothing, and leaves nothing", async () => {
      const r = await node.call({
        command: "DEL",
        containerID: cid,
        netns: pod.path,
        ifname: "eth0",
        config: node.conf(v, before(v, "0.4.0") ? {} : { prevResult: added }),
      });
      assertEquals([r.code, r.stdout], [0, ""], r.stdout + r.stderr);
      const after = await node.state();
      // The bridge stays (shared by all pods), exactly as before ADD otherwise.
      assertEquals(after.allocations, []);
      assertEquals(after.links.filter((l) => !clean.links.includes(l)), [node.bridge]);
    });
  });

  Deno.test(`ohno-ipam face at cniVersion ${v}: an IPAM result, no interfaces`, async () => {
    await using node = await cniNode({ network: `ipamface${v.replaceAll(".", "")}` });
    const conf = {
      cniVersion: v,
      name: node.network,
      type: "bridge",
      ipam: { type: "ohno-ipam", dataDir: node.dataDir, ranges: [[{ subnet: "10.89.0.0/24" }]] },
    };
    const r = await node.call({
      command: "ADD",
      containerID: "ipamface",
      netns: "/proc/self/ns/net",
      ifname: "eth0",
      config: conf,
      bin: OHNO_IPAM,
    });
    assertEquals(r.code, 0, r.stdout);
    assertEquals(r.json?.interfaces, undefined);
    const ips = r.json?.ips as Record<string, unknown>[];
    assertEquals(ips.map((i) => [i.address, i.gateway, i.interface]), [[
      "10.89.0.2/24",
      "10.89.0.1",
      undefined,
    ]]);
    assertEquals(ips[0]?.version, before(v, "1.0.0") ? "4" : undefined);
    const d = await node.call({
      command: "DEL",
      containerID: "ipamface",
      netns: "",
      ifname: "eth0",
      config: conf,
      bin: OHNO_IPAM,
    });
    assertEquals([d.code, d.stdout], [0, ""]);
    assertEquals(node.allocations(), []);
  });
}
