/** `ohno lab …`: a simulated cluster in network namespaces (lab/). */
import type { Command } from "commander";
import type { LabStatus, LabUpOptions } from "../lab/lab.ts";
import { selfExecutable } from "../lib/argv0.ts";
import { CliError } from "./errors.ts";
import { outputFormat, print, printJson, table } from "./output.ts";

type Named = { name: string };

async function lab() {
  return await import("../lab/lab.ts");
}

/** Names a lab: `--name`, default "ohno". */
const named = (c: Command) =>
  c.option("--name <name>", "which lab (1-16 lowercase letters and digits)", "ohno");

export function registerLab(program: Command): void {
  const cmd = program.command("lab")
    .description("a simulated multi-node cluster in network namespaces (never the machine's own)");
  registerUp(cmd);
  registerDown(cmd);
  registerPod(cmd);
  registerExec(cmd);
  registerPing(cmd);
  registerStatus(cmd);
  registerFaults(cmd);
  registerDemo(cmd);
}

type UpFlags = Named & {
  nodes: string;
  resyncPeriod?: string;
  mtu: string;
  underlay: string;
  subnets: string;
  backend: string;
  bgpRouter?: string;
  bgpMesh: boolean;
  kubernetes?: string;
};

/** `lab up`: build a lab. */
function registerUp(cmd: Command): void {
  named(cmd.command("up"))
    .description("build a lab: underlay, etcd, an ohno agent per node")
    .option("--nodes <n>", "how many nodes", "2")
    .option("--resync-period <duration>", "the agents' full route reconcile period")
    .option("--mtu <bytes>", "the underlay's MTU (pods get it, host-gw adds no overhead)", "1500")
    .option(
      "--underlay <kind>",
      "flat (one L2 segment) or routed (nodes in subnets joined by a router)",
      "flat",
    )
    .option("--subnets <n>", "subnets of a routed underlay", "2")
    .option("--backend <type>", "the agents' routing backend: host-gw, vxlan or bgp", "host-gw")
    .option(
      "--bgp-router <kind>",
      "routed underlay: the router peers by BGP with every node (bird) or speaks none (silent)",
    )
    .option("--no-bgp-mesh", "bgp: no node-to-node mesh (the nodes peer with the router only)")
    .option(
      "--kubernetes <bindir>",
      "real Kubernetes instead of agents: the control plane, and containerd and a kubelet per " +
        "node, from the programs in <bindir> (tests/e2e/build.sh); install ohno with kubectl",
    )
    .action(async (o: UpFlags) => {
      if (o.kubernetes !== undefined) {
        const { kubeUp } = await import("../lab/kube.ts");
        const s = await kubeUp({
          name: o.name,
          nodes: upOptions(o).nodes,
          bin: o.kubernetes,
          ohno: selfExecutable(),
          say: print,
        });
        print(
          `lab ${o.name} is up: kubectl --kubeconfig ${s.kubeconfig} (in netns ohno-lab-${o.name})`,
        );
        return;
      }
      const options = upOptions(o);
      await (await lab()).up(options);
      print(`lab ${o.name} is up`);
    });
}

/** The options of `lab up` from its flags (bad flags: exit code 2). */
function upOptions(o: UpFlags): LabUpOptions {
  const n = Number(o.nodes);
  if (!Number.isInteger(n) || n < 1) {
    throw new CliError(`--nodes ${JSON.stringify(o.nodes)} is not a count`, 2);
  }
  const mtu = Number(o.mtu);
  if (!Number.isInteger(mtu) || mtu < 1280 || mtu > 65535) {
    throw new CliError(`--mtu ${JSON.stringify(o.mtu)} is not an MTU from 1280 to 65535`, 2);
  }
  if (o.underlay !== "flat" && o.underlay !== "routed") {
    throw new CliError(`--underlay ${JSON.stringify(o.underlay)} is not flat or routed`, 2);
  }
  const subnets = Number(o.subnets);
  if (!Number.isInteger(subnets) || subnets < 2 || subnets > 16) {
    throw new CliError(`--subnets ${JSON.stringify(o.subnets)} is not a count from 2 to 16`, 2);
  }
  if (o.backend !== "host-gw" && o.backend !== "vxlan" && o.backend !== "bgp") {
    throw new CliError(
      `--backend ${JSON.stringify(o.backend)} is not host-gw, vxlan or bgp`,
      2,
    );
  }
  if (o.bgpRouter !== undefined && o.bgpRouter !== "bird" && o.bgpRouter !== "silent") {
    throw new CliError(`--bgp-router ${JSON.stringify(o.bgpRouter)} is not bird or silent`, 2);
  }
  if (o.bgpRouter !== undefined && o.underlay !== "routed") {
    throw new CliError("--bgp-router needs --underlay routed", 2);
  }
  return {
    name: o.name,
    nodes: n,
    ohno: selfExecutable(),
    ...(o.resyncPeriod ? { resyncPeriod: o.resyncPeriod } : {}),
    mtu,
    underlay: o.underlay,
    ...(o.underlay === "routed" ? { subnets } : {}),
    ...(o.backend !== "host-gw"
      ? {
        extraConfig: {
          backend: o.backend,
          ...(o.bgpMesh === false ? { bgpNodeMesh: false } : {}),
        },
      }
      : {}),
    ...(o.bgpRouter ? { bgpRouter: o.bgpRouter as "bird" | "silent" } : {}),
    say: print,
  };
}

/** `lab down`. */
function registerDown(cmd: Command): void {
  named(cmd.command("down")).description("take a lab down (also after a crash)")
    .action(async (o: Named) => {
      const removed = await (await lab()).down(o.name);
      print(`lab ${o.name} is down (${removed.length} namespaces removed)`);
    });
}

/** `lab pod add|del`. */
function registerPod(cmd: Command): void {
  const pod = cmd.command("pod").description("add or delete a pod");
  named(pod.command("add <node> <pod>")).description("add a pod on a node, as a runtime does")
    .action(async (node: string, name: string, o: Named) => {
      const p = await (await lab()).podAdd(o.name, node, name);
      print(`${p.name} on ${p.node}: ${p.ips.join(", ")}`);
    });
  named(pod.command("del <pod>")).description("delete a pod")
    .action(async (name: string, o: Named) => {
      await (await lab()).podDel(o.name, name);
      print(`${name} deleted`);
    });
}

/** `lab exec`: a command in a pod, a node or the outside host. */
function registerExec(cmd: Command): void {
  named(cmd.command("exec <who> <cmd...>"))
    .description("run a command in a pod, a node (node1…) or the outside host: exec POD -- CMD")
    .action(async (who: string, argv: string[], o: Named) => {
      const code = await (await lab()).exec(o.name, who, argv);
      if (code !== 0) throw new CliError("", code);
    });
}

/** `lab ping`. */
function registerPing(cmd: Command): void {
  named(cmd.command("ping <from> <to>")).description("ping every address of <to> from <from>")
    .action(async (from: string, to: string, o: Named) => {
      const rs = await (await lab()).ping(o.name, from, to);
      for (const r of rs) print(`${r.from} -> ${r.to} ${r.ip}: ${r.ok ? `ok ${r.rtt}` : "FAILED"}`);
      if (rs.some((r) => !r.ok)) throw new CliError("some pings failed", 1);
    });
}

/** `lab status`: nodes, BGP sessions, routing problems, blocks and pods. */
function registerStatus(cmd: Command): void {
  named(cmd.command("status")).description("nodes, routing problems, blocks and pods")
    .option("-o, --output <format>", "table or json", "table")
    .action(async (o: Named & { output: string }) => {
      const fmt = outputFormat(o.output, ["table", "json"] as const);
      const s = await (await lab()).status(o.name);
      if (fmt === "json") return printJson(s);
      printStatus(s);
    });
}

/** `lab status` as tables. */
function printStatus(s: LabStatus): void {
  print(`lab ${s.name}: etcd ${s.etcd.endpoint} ${s.etcd.running ? "running" : "DOWN"}\n`);
  print(
    table(
      ["NODE", "IPV4", "IPV6", "AGENT"],
      s.nodes.map((n) => [n.name, n.ipv4, n.ipv6, n.agent]),
    ),
  );
  const sessions = [
    ...s.nodes.flatMap((n) => (n.bgp ?? []).map((b) => ({ on: n.name, ...b }))),
    ...(s.router?.bgp ?? []).map((b) => ({ on: "router", ...b })),
  ];
  if (sessions.length) {
    print("");
    print(table(
      ["BGP ON", "SESSION", "PEER", "NEIGHBOR", "STATE", "ROUTES RECEIVED"],
      sessions.map((b) => [
        b.on,
        b.name,
        b.peer,
        b.neighbor,
        b.established ? "established" : `${b.state}${b.lastError ? ` (${b.lastError})` : ""}`,
        String(b.routesReceived),
      ]),
    ));
  }
  print("");
  // Routing problems the agents report: off-link next hops, VXLAN setting disagreements.
  const problems = routingProblems(s);
  print(
    problems.length
      ? table(["NODE", "ROUTING PROBLEM", "DETAIL"], problems)
      : "no routing problems",
  );
  print("");
  print(
    table(["BLOCK", "NODE", "USED"], s.blocks.map((b) => [b.cidr, b.node, String(b.used)])),
  );
  print("");
  print(
    s.pods.length
      ? table(
        ["POD", "NODE", "ADDRESSES"],
        s.pods.map((p) => [p.name, p.node, p.ips.join(", ")]),
      )
      : "no pods",
  );
}

/** Routing problems the agents report: a row (node, problem, detail) each. */
function routingProblems(s: LabStatus): string[][] {
  const problems: string[][] = [];
  for (const n of s.nodes) {
    for (const u of n.routing?.unreachableNextHops ?? []) {
      problems.push([
        n.name,
        "unreachable next hop",
        `${u.dst} via ${u.via ?? "?"}${u.node ? ` (node ${u.node})` : ""}`,
      ]);
    }
    for (const m of n.routing?.vxlanMismatches ?? []) {
      problems.push([
        n.name,
        "vxlan mismatch",
        `node ${m.node} has VNI ${m.vni} port ${m.port}; ${n.name} VNI ${m.localVni} port ${m.localPort}`,
      ]);
    }
  }
  return problems;
}

/** `lab agent stop|kill|start` and `lab etcd stop|start`: fault drills. */
function registerFaults(cmd: Command): void {
  const agent = cmd.command("agent").description(
    "stop, kill or start a node's agent (fault drills)",
  );
  for (
    const [verb, desc] of [["stop", "SIGTERM"], ["kill", "SIGKILL"], [
      "start",
      "start again",
    ]] as const
  ) {
    named(agent.command(`${verb} <node>`)).description(desc).action(
      async (node: string, o: Named) => {
        const l = await lab();
        if (verb === "start") await l.startAgent(o.name, node);
        else await l.stopAgent(o.name, node, verb === "kill");
        print(`agent on ${node}: ${verb === "start" ? "ready" : "stopped"}`);
      },
    );
  }
  const etcd = cmd.command("etcd").description("stop or start the lab's etcd (fault drills)");
  named(etcd.command("stop")).action(async (o: Named) => {
    await (await lab()).etcdStop(o.name);
    print("etcd stopped");
  });
  named(etcd.command("start")).action(async (o: Named) => {
    await (await lab()).etcdStart(o.name);
    print("etcd started");
  });
}

/** `lab demo`: ohno's main job. */
function registerDemo(cmd: Command): void {
  named(cmd.command("demo"))
    .description("ohno's main job: 2 nodes, 4 pods, pings within and across nodes, then teardown")
    .option("--backend <type>", "host-gw or vxlan", "host-gw")
    .option("--underlay <kind>", "flat or routed (the nodes in two subnets)", "flat")
    .action(async (o: Named & { backend: string; underlay: string }) => {
      if (o.backend !== "host-gw" && o.backend !== "vxlan") {
        throw new CliError(`--backend ${JSON.stringify(o.backend)} is not host-gw or vxlan`, 2);
      }
      if (o.underlay !== "flat" && o.underlay !== "routed") {
        throw new CliError(`--underlay ${JSON.stringify(o.underlay)} is not flat or routed`, 2);
      }
      const { demo } = await import("../lab/demo.ts");
      const ok = await demo({
        name: o.name,
        ohno: selfExecutable(),
        say: print,
        backend: o.backend,
        underlay: o.underlay,
      });
      if (!ok) throw new CliError("the demo found problems (see above)", 1);
    });
}
