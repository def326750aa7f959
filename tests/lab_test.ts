/**
 * The node agent end to end, in labs: etcd in the lab namespace, `dist/ohno daemon` in
 * every node namespace, pods added exactly as a runtime adds them.
 */
import { assert, assertEquals, assertMatch } from "./support/assert.ts";
import { testLab, within } from "./support/lab.ts";
import { startEcho, whoAmI } from "./support/tcpecho.ts";
import { etcdMissing } from "./support/etcd.ts";
import { OHNO } from "./support/ohno.ts";
import { runUnderSubreaper } from "./support/subreaper.ts";
import { processState } from "../lib/proc.ts";
import { CniRuntime } from "../lab/runtime.ts";
import { ipJson, type IpRoute } from "../netns/ip.ts";
import { Netns, runCommand } from "../netns/netns.ts";
import { AgentClient, AgentError } from "../ipam/client.ts";
import * as labs from "../lab/lab.ts";
import { createNamedNetns, deleteNamedNetns } from "../netns/manage.ts";
import { linkNames } from "../netns/links.ts";
import { hostVethName } from "../cni/names.ts";

const missing = etcdMissing();
const skip = missing ? ` [SKIP: ${missing}]` : "";
const opts = { ignore: !!missing, sanitizeResources: false, sanitizeOps: false };

Deno.test({
  ...opts,
  name:
    `3-node lab: every pod pings every other over IPv4 and IPv6; outside sees the node's address${skip}`,
  async fn() {
    await using t = await testLab({ nodes: 3 });
    const pods: string[] = [];
    for (const node of ["node1", "node2", "node3"]) {
      for (const i of [1, 2]) {
        const p = `${node.slice(-1)}p${i}`;
        await t.lab.podAdd(t.name, node, p);
        pods.push(p);
      }
    }
    const failures: string[] = [];
    let count = 0;
    for (const a of pods) {
      for (const b of pods) {
        if (a === b) continue;
        for (const r of await t.lab.ping(t.name, a, b)) {
          count++;
          if (!r.ok) failures.push(`${a} -> ${b} ${r.ip}`);
        }
      }
    }
    assertEquals(failures, []);
    assertEquals(count, 6 * 5 * 2);
    // Cross-node routes are ohno's host-gw routes: node1 routes node2's and node3's blocks.
    const routes = await t.routes("node1");
    assertEquals(routes.length, 4, routes.join("\n"));
    assert(
      routes.every((r) => /via (172\.31\.0\.1[23]|fd00:172:31::1[23])$/.test(r)),
      routes.join("\n"),
    );

    // Masquerade: the outside host sees node1's address; a pod on another node sees the pod's.
    const s = t.state();
    using outside = Netns.named(`ohno-lab-${t.name}-outside`);
    using p1 = Netns.named(s.pods["1p1"]!.netns);
    using p3 = Netns.named(s.pods["3p1"]!.netns);
    await using echoOut = await startEcho(outside, 8080);
    await using echoPod = await startEcho(p3, 8080);
    void echoOut;
    void echoPod;
    assertEquals(await whoAmI(p1, "172.31.0.200"), "172.31.0.11");
    assertEquals(await whoAmI(p1, "fd00:172:31::200"), "fd00:172:31::11");
    const p1ips = s.pods["1p1"]!.ips;
    assertEquals(await whoAmI(p1, s.pods["3p1"]!.ips[0]!), p1ips[0]);
    assertEquals(await whoAmI(p1, s.pods["3p1"]!.ips[1]!), p1ips[1]);
    const check = await t.lab.ipam(t.name, ["check"]);
    assertEquals(check.code, 0, check.stdout);
  },
});

Deno.test({
  ...opts,
  name:
    `a removed node's routes vanish within 5 s; a route deleted by hand returns within a reconcile period${skip}`,
  async fn() {
    await using t = await testLab({ nodes: 3, resyncPeriod: "2s" });
    const before = await t.routes("node1");
    assertEquals(before.length, 4);
    // By hand: delete one of ohno's routes on node1; the periodic reconcile restores it.
    const victim = before.find((r) => r.includes("172.31.0.12"))!;
    // The delete's own answer says it went: a read afterwards could already see the periodic
    // reconcile's repair (a reconcile takes a few ms over rtnetlink).
    const del = await runCommand(t.node("node1"), "ip", {
      args: ["route", "del", victim.split(" ")[0]!, "proto", "111"],
    });
    assertEquals(del.code, 0, del.stderr);
    const back = await within(
      2000 + 2000,
      "the deleted route back",
      async () => (await t.routes("node1")).includes(victim),
    );
    assert(back <= 4000);
    // A foreign route to somewhere else is left alone by every reconcile.
    await runCommand(t.node("node1"), "ip", {
      args: ["route", "add", "192.0.2.0/24", "via", "172.31.0.1"],
    });

    // node3 leaves: its agent stops and the node is released from the cluster.
    await t.lab.stopAgent(t.name, "node3");
    const rel = await t.lab.ipam(t.name, ["release", "--node", "node3"]);
    assertEquals(rel.code, 0, rel.stderr);
    for (const node of ["node1", "node2"]) {
      await within(
        5000,
        `node3's routes gone from ${node}`,
        async () => !(await t.routes(node)).some((r) => /172\.31\.0\.13|fd00:172:31::13/.test(r)),
      );
    }
    assertEquals((await t.routes("node1")).length, 2);
    const foreign = await ipJson<IpRoute[]>(["route", "show", "192.0.2.0/24"], {
      netns: t.node("node1"),
    });
    assertEquals(foreign.length, 1, "foreign routes are never touched");
  },
});

Deno.test({
  ...opts,
  name:
    `kill -9 of an agent during 100 pod ADDs and DELs, restart: no duplicates, no leak after GC, pods keep pinging${skip}`,
  async fn() {
    await using t = await testLab({ nodes: 2 });
    await t.lab.podAdd(t.name, "node1", "steady1");
    await t.lab.podAdd(t.name, "node2", "steady2");
    const blocksOf = async (node: string) =>
      (JSON.parse(
        (await t.lab.ipam(t.name, ["blocks", "--node", node, "-o", "json"])).stdout,
      ) as { cidr: string }[]).map((b) => b.cidr).sort();
    const blocksBefore = await blocksOf("node1");
    assertEquals(blocksBefore.length, 2, "one block per family");
    const s0 = t.state();
    using steady = Netns.named(s0.pods["steady1"]!.netns);
    // Existing pods ping each other all through the drill (5 pings a second).
    const pinger = steady.spawn("ping", {
      args: ["-i", "0.2", "-W", "1", s0.pods["steady2"]!.ips[0]!],
      stdout: "piped",
      stderr: "piped",
    });
    // The schedule: an ADD, an ADD, a DEL of the oldest live pod, …; the agent is killed
    // before step 30 and started again before step 45. While it is dead, every ADD and
    // every DEL is CNI error 11 (try again later); a refused DEL is retried by the "runtime"
    // once the agent is back, and must then succeed. Nothing is swallowed.
    const codeOf = (e: unknown) => (e as { code?: number }).code;
    let added = 0, refusedAdds = 0, deleted = 0, refusedDels = 0;
    let addsAlive = 0, addsDead = 0, delsAlive = 0;
    const live: string[] = [];
    const retry: string[] = [];
    let dead = false;
    for (let i = 0; i < 100; i++) {
      if (i === 30) {
        await t.lab.stopAgent(t.name, "node1", true); // kill -9
        dead = true;
      }
      if (i === 45) {
        await t.lab.startAgent(t.name, "node1");
        dead = false;
        for (const p of retry.splice(0)) {
          await t.lab.podDel(t.name, p);
          deleted++;
        }
      }
      if (i % 3 === 2 && live.length) {
        const p = live.shift()!;
        if (dead) {
          const e = await t.lab.podDel(t.name, p).then(() => undefined, (e) => e);
          assertEquals(codeOf(e), 11, `DEL ${p} with the agent dead: ${e}`);
          refusedDels++;
          retry.push(p);
        } else {
          delsAlive++;
          await t.lab.podDel(t.name, p);
          deleted++;
        }
        continue;
      }
      const p = `k${i}`;
      if (dead) {
        addsDead++;
        const e = await t.lab.podAdd(t.name, "node1", p).then(() => undefined, (e) => e);
        assertEquals(codeOf(e), 11, `ADD ${p} with the agent dead: ${e}`);
        refusedAdds++;
      } else {
        addsAlive++;
        await t.lab.podAdd(t.name, "node1", p);
        live.push(p);
        added++;
      }
    }
    pinger.kill("SIGINT");
    const out = new TextDecoder().decode((await pinger.output()).stdout);
    assert(addsDead > 0 && refusedDels > 0, "the schedule put ADDs and DELs in the dead window");
    assertEquals([added, refusedAdds], [addsAlive, addsDead]);
    assertEquals(deleted, delsAlive + refusedDels, "every DEL succeeded (refused ones on retry)");
    assertEquals(live.length, added - deleted);
    const node1Pods = () =>
      Object.values(t.state().pods).filter((p) => p.node === "node1").map((p) => p.name).sort();
    assertEquals(node1Pods(), ["steady1", ...live].sort());
    const stats = /(\d+) packets transmitted, (\d+) received/.exec(out);
    assert(stats, out);
    assert(Number(stats[1]) > 20, out);
    assertEquals(stats[1], stats[2], `the steady pods lost packets: ${stats[0]}`);

    // GC through the plugin, as a runtime does: the valid attachments are the pods that exist.
    const state = t.state();
    const node1 = state.nodes.find((n) => n.name === "node1")!;
    const list = JSON.parse(Deno.readTextFileSync(`${node1.dir}/cni/net.d/10-ohno.conflist`));
    const valid = Object.values(state.pods).filter((p) => p.node === "node1").map((p) => ({
      containerID: p.containerID,
      ifname: p.ifname,
    }));
    const rt = new CniRuntime({ path: [`${node1.dir}/cni/bin`], host: t.node("node1") });
    await rt.exec("GC", { ...list, cniVersion: "1.1.0" }, {
      ...list.plugins[0],
      "cni.dev/valid-attachments": valid,
    }, {
      containerID: "",
      netns: "",
      ifname: "",
    }, undefined);
    const rows = JSON.parse(
      (await t.lab.ipam(t.name, ["ls", "--node", "node1", "-o", "json"])).stdout,
    ) as {
      ip: string;
      containerID: string;
    }[];
    const owners = new Set(rows.map((r) => r.containerID));
    assertEquals(
      [...owners].sort(),
      valid.map((v) => v.containerID).sort(),
      "no leaked allocation after GC",
    );
    const all = JSON.parse((await t.lab.ipam(t.name, ["ls", "-o", "json"])).stdout) as {
      ip: string;
    }[];
    assertEquals(new Set(all.map((r) => r.ip)).size, all.length, "no duplicate addresses");
    assertEquals((await t.lab.ipam(t.name, ["check"])).code, 0);
    for (const r of await t.lab.ping(t.name, "steady1", "steady2")) assert(r.ok, r.ip);
    // Every churn pod deleted: node1 holds exactly steady1's two addresses, nothing else.
    for (const p of live.splice(0)) await t.lab.podDel(t.name, p);
    const left = JSON.parse(
      (await t.lab.ipam(t.name, ["ls", "--node", "node1", "-o", "json"])).stdout,
    ) as { ip: string; containerID: string }[];
    assertEquals(
      left.map((r) => r.ip).sort(),
      [...t.state().pods["steady1"]!.ips].sort(),
      "only steady1's addresses are left",
    );
    const check = await t.lab.ipam(t.name, ["check"]);
    assertEquals(check.code, 0, check.stdout + check.stderr);
    // The restarted agent kept its node's blocks (the steady pod's addresses stay routed).
    assertEquals(await blocksOf("node1"), blocksBefore, "node1 kept its blocks across kill -9");
  },
});

Deno.test({
  ...opts,
  name:
    `the agent does the pod's kernel work; kill -9 in the middle of an ADD it does leaks no address and no veth${skip}`,
  async fn() {
    await using t = await testLab({ nodes: 1 });
    const node = t.state().nodes[0]!;
    const list = labs.nodeConflist(node);
    const netns = `ohno-lab-${t.name}-pod-mid`;
    (await createNamedNetns(netns)).close();
    try {
      const a = { containerID: `mid-${t.name}`, netns: `/var/run/netns/${netns}`, ifname: "eth0" };
      const host = t.node("node1");
      const veth = hostVethName(a.containerID, a.ifname);
      const held = async () =>
        (JSON.parse((await t.lab.ipam(t.name, ["ls", "-o", "json"])).stdout) as {
          containerID: string;
        }[]).filter((r) => r.containerID === a.containerID).length;
      // The ADD stops after its host side, in whichever process does the call.
      const paused = new CniRuntime({
        path: [`${node.dir}/cni/bin`],
        host,
        env: { OHNO_TEST_FAULT: "pause-after-host" },
      });
      const add = paused.add(list, a).then(() => undefined, (e) => e);
      await within(
        15_000,
        "the host veth, made for the paused ADD",
        () => Promise.resolve(linkNames({ netns: host }).includes(veth)),
      );
      assertEquals(await held(), 2, "the paused ADD holds its two addresses");
      // The agent is doing the call: killing it ends the call, answered 11 by the plugin.
      await t.lab.stopAgent(t.name, "node1", true); // kill -9
      const e = await add;
      assertEquals((e as { code?: number })?.code, 11, `ADD with its agent killed: ${e}`);
      assert(linkNames({ netns: host }).includes(veth), "the killed call left its veth");
      await t.lab.startAgent(t.name, "node1");
      // What a runtime does after a failed ADD: DEL. It frees the address and the veth.
      const rt = new CniRuntime({ path: [`${node.dir}/cni/bin`], host });
      await rt.del(list, a);
      assertEquals(await held(), 0, "no address left for the killed ADD");
      assert(!linkNames({ netns: host }).includes(veth), "no veth left for the killed ADD");
      const check = await t.lab.ipam(t.name, ["check"]);
      assertEquals(check.code, 0, check.stdout + check.stderr);
      // And an ADD through the agent works end to end after its restart.
      const r = await rt.add(list, { ...a, containerID: `${a.containerID}-2` });
      assertEquals((r.ips as unknown[]).length, 2);
      await rt.del(list, { ...a, containerID: `${a.containerID}-2` });
    } finally {
      await deleteNamedNetns(netns);
    }
  },
});

Deno.test({
  ...opts,
  name:
    `ohno lab agent start right after kill -9 brings the agent back, though its zombie is not reaped yet${skip}`,
  async fn() {
    await using t = await testLab({ nodes: 1 });
    const cli = (...args: string[]) =>
      runCommand(undefined, OHNO, { args: ["lab", ...args, "--name", t.name] });
    // The agent's parent must not reap it at once, as init may not: start it through
    // the CLI under a parent that never reaps, so the killed agent stays a zombie.
    await t.lab.stopAgent(t.name, "node1");
    await using holder = await runUnderSubreaper(OHNO, [
      "lab",
      "agent",
      "start",
      "node1",
      "--name",
      t.name,
    ]);
    assertEquals(holder.code, 0, holder.stderr);
    const old = t.state().nodes[0]!.pid;
    Deno.kill(old, "SIGKILL");
    await within(
      10_000,
      "the killed agent a zombie",
      () => Promise.resolve(processState(old) === "Z"),
    );

    assertEquals((await t.lab.status(t.name)).nodes[0]!.agent, "down", "a zombie is down");
    const r = await cli("agent", "start", "node1");
    assertEquals(r.code, 0, `agent start after kill -9: ${r.stderr}`);
    assertEquals(r.stdout.trim(), "agent on node1: ready");
    assertEquals(processState(old), "Z", "the old agent was still an unreaped zombie");
    const node = (await t.lab.status(t.name)).nodes.find((n) => n.name === "node1")!;
    assert(node.pid !== old, "a new agent runs");
    assertEquals(node.agent, "ready");
  },
});

Deno.test({
  ...opts,
  name:
    `etcd stopped: pods keep working, a new ADD fails with 11 within 5 s; etcd back: ADDs work again${skip}`,
  async fn() {
    await using t = await testLab({ nodes: 2 });
    await t.lab.podAdd(t.name, "node1", "e1");
    await t.lab.podAdd(t.name, "node2", "e2");
    await t.lab.etcdStop(t.name);
    for (const r of await t.lab.ping(t.name, "e1", "e2")) {
      assert(r.ok, `${r.ip} while etcd is down`);
    }
    const t0 = performance.now();
    let code: number | undefined;
    try {
      await t.lab.podAdd(t.name, "node1", "e3");
    } catch (e) {
      code = (e as { code?: number }).code;
      assertMatch((e as Error).message, /\[11\]/);
    }
    const took = performance.now() - t0;
    assertEquals(code, 11);
    assert(took < 5000, `ADD failed after ${took} ms`);
    await t.lab.etcdStart(t.name);
    // No restart of anything: the agent's client reconnects by itself.
    await within(15_000, "an ADD working again", async () => {
      try {
        await t.lab.podAdd(t.name, "node1", "e4");
        return true;
      } catch {
        return false;
      }
    });
    for (const r of await t.lab.ping(t.name, "e4", "e2")) assert(r.ok, r.ip);
  },
});

Deno.test({
  ...opts,
  name:
    `2-node lab: node1's agent cannot release node2's pod; its address is not handed out again${skip}`,
  async fn() {
    await using t = await testLab({ nodes: 2 });
    await t.lab.podAdd(t.name, "node2", "victim");
    const s = t.state();
    const pod = s.pods["victim"]!;
    const agentOf = (node: string) => {
      const list = t.lab.nodeConflist(s.nodes.find((n) => n.name === node)!);
      const ipam = list.plugins[0]!.ipam as { daemonSocket: string };
      return { network: list.name, client: new AgentClient(ipam.daemonSocket) };
    };
    const n1 = agentOf("node1"), n2 = agentOf("node2");
    const att = { network: n1.network, containerID: pod.containerID, ifname: pod.ifname };

    const rel = await n1.client.release(att);
    assertEquals(rel.released, [], "node1 freed node2's addresses");
    const chk = await n1.client.check(att).catch((e) => e);
    assert(chk instanceof AgentError && chk.kind === "not-found", String(chk));
    // node2 still knows the pod, and hands none of its addresses to anyone else.
    assertEquals((await n2.client.check(att)).ips.length, pod.ips.length);
    for (const [i, ip] of pod.ips.entries()) {
      const e = await n2.client.allocate({
        network: n2.network,
        containerID: `thief${i}`,
        ifname: "eth0",
        requestedIPs: [ip],
      }).catch((e) => e);
      assert(e instanceof AgentError && e.kind === "unavailable", `${ip}: ${String(e)}`);
    }
    const check = await t.lab.ipam(t.name, ["check"]);
    assertEquals(check.code, 0, check.stdout);
    const ls = await t.lab.ipam(t.name, ["ls"]);
    for (const ip of pod.ips) assertMatch(ls.stdout, new RegExp(ip.replace(/[.:]/g, "\\$&")));
  },
});
