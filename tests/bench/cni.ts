/**
 * CNI ADD/DEL: ohno with its embedded IPAM next to the reference `bridge` + `host-local`
 * in the same run, each in a node namespace of its own with the same kind of pod
 * namespaces. Serial latency (p50/p99 over N calls, the two plugins interleaved so noise
 * hits both alike) and throughput at concurrency 8. Also where ohno's ADD time goes,
 * from its own debug timing line.
 */
import { runCommand } from "../../netns/netns.ts";
import { callCni, OHNO, REF_CNI_DIR } from "../support/ohno.ts";
import { type TempNetns, tempNetns, tempNetnsSet } from "../support/netns.ts";
import { ms, note, printTable, ratio, summarize, timeIt } from "./stats.ts";

export interface Plugin {
  label: string;
  bin: string;
  host: TempNetns;
  conf: Record<string, unknown>;
}

export async function call(
  p: Plugin,
  command: "ADD" | "DEL",
  pod: TempNetns,
  id: string,
  env = {},
) {
  const r = await callCni({
    command,
    host: p.host.ns,
    bin: p.bin,
    containerID: id,
    netns: pod.path,
    ifname: "eth0",
    config: p.conf,
    env,
  });
  if (r.code !== 0) throw new Error(`${p.label} ${command} ${id}: ${r.stdout}${r.stderr}`);
}

export async function pool<T>(
  items: T[],
  width: number,
  fn: (t: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

/**
 * ohno next to a reference plugin in the same run: warm-up, serial ADD/DEL latency (the two
 * interleaved, so noise hits both alike), pods per second at concurrency `width`, and
 * where ohno's ADD time goes, from its own debug timing line (20 ADDs logged to `log`).
 */
export async function compareAddDel(o: {
  ohno: Plugin;
  ref: Plugin;
  pods: TempNetns[];
  serial: number;
  concurrent: number;
  width: number;
  log: string;
  titles: { latency: string; rate: string; phases: string };
  /** What the IPAM, host and pod phases of ohno's ADD are, for the table. */
  phases: { ipam: string; host: string; pod: string };
}): Promise<void> {
  const { ohno, ref, pods, serial, concurrent, width, log } = o;
  // Warm-up: create what the plugins share, page in both binaries, fill Deno's code cache.
  for (const p of [ohno, ref]) {
    await call(p, "ADD", pods[0]!, "warm");
    await call(p, "DEL", pods[0]!, "warm");
  }
  const lat = {
    ohno: { add: [] as number[], del: [] as number[] },
    ref: { add: [] as number[], del: [] as number[] },
  };
  for (let i = 0; i < serial; i++) {
    const pod = pods[i]!;
    for (const [key, p] of [["ohno", ohno], ["ref", ref]] as const) {
      lat[key].add.push(await timeIt(() => call(p, "ADD", pod, `s${i}`)));
      lat[key].del.push(await timeIt(() => call(p, "DEL", pod, `s${i}`)));
    }
  }
  const rate = async (p: Plugin) => {
    const list = pods.slice(0, concurrent).map((pod, i) => ({ pod, i }));
    const add = await timeIt(() => pool(list, width, ({ pod, i }) => call(p, "ADD", pod, `c${i}`)));
    const del = await timeIt(() => pool(list, width, ({ pod, i }) => call(p, "DEL", pod, `c${i}`)));
    return { add: (concurrent / add) * 1000, del: (concurrent / del) * 1000 };
  };
  const rOhno = await rate(ohno);
  const rRef = await rate(ref);
  const s = (x: number[]) => summarize(x);
  const [oa, od, ra, rd] = [s(lat.ohno.add), s(lat.ohno.del), s(lat.ref.add), s(lat.ref.del)];
  printTable(`${o.titles.latency}, ${serial} serial calls each, interleaved (ms)`, [
    "plugin",
    "ADD p50",
    "ADD p99",
    "DEL p50",
    "DEL p99",
  ], [
    [ohno.label, ms(oa.p50), ms(oa.p99), ms(od.p50), ms(od.p99)],
    [ref.label, ms(ra.p50), ms(ra.p99), ms(rd.p50), ms(rd.p99)],
    [
      "ratio ohno/reference",
      ratio(oa.p50, ra.p50),
      ratio(oa.p99, ra.p99),
      ratio(od.p50, rd.p50),
      ratio(od.p99, rd.p99),
    ],
  ]);
  printTable(`${o.titles.rate} at concurrency ${width} (${concurrent} pods)`, [
    "plugin",
    "ADD/s",
    "DEL/s",
  ], [
    [ohno.label, rOhno.add.toFixed(1), rOhno.del.toFixed(1)],
    [ref.label, rRef.add.toFixed(1), rRef.del.toFixed(1)],
    ["ratio ohno/reference", ratio(rOhno.add, rRef.add), ratio(rOhno.del, rRef.del)],
  ]);

  const phases: Record<string, number[]> = {
    startup: [],
    probe: [],
    ipam: [],
    host: [],
    pod: [],
    total: [],
  };
  for (let i = 0; i < 20; i++) {
    const pod = pods[i]!;
    const wall = await timeIt(() =>
      call(ohno, "ADD", pod, `t${i}`, { OHNO_LOG_LEVEL: "debug", OHNO_LOG_FILE: log })
    );
    await call(ohno, "DEL", pod, `t${i}`);
    const line = Deno.readTextFileSync(log).trim().split("\n").filter((l) =>
      l.includes(" timing ")
    ).at(-1) ?? "";
    const f = Object.fromEntries(
      [...line.matchAll(/(\w+)=([\d.]+)/g)].map((m) => [m[1]!, Number(m[2])]),
    );
    phases.startup!.push(f.verbStart ?? NaN);
    phases.probe!.push(f.probe ?? NaN);
    phases.ipam!.push((f.ipam ?? NaN) - (f.probe ?? NaN));
    phases.host!.push((f.host ?? NaN) - (f.ipam ?? NaN));
    phases.pod!.push((f.pod ?? NaN) - (f.host ?? NaN));
    phases.total!.push(wall);
  }
  const p50 = (k: string) => ms(summarize(phases[k]!).p50);
  printTable(`${o.titles.phases} (p50 of 20, ms)`, ["phase", "ms"], [
    ["process start → verb (Deno start-up, module load, config)", p50("startup")],
    ["probe (the node before anything is touched: bridge, MTU)", p50("probe")],
    [o.phases.ipam, p50("ipam")],
    [o.phases.host, p50("host")],
    [o.phases.pod, p50("pod")],
    ["whole call as the runtime sees it", p50("total")],
  ]);
}

export async function benchCni(serial = 100, concurrent = 64, width = 8): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ohnot-bench-" });
  await using ohnoHost = await tempNetns("bo");
  await using refHost = await tempNetns("br");
  await using pods = await tempNetnsSet(Math.max(serial, concurrent), "bp");
  const log = `${dir}/ohno.log`;
  const ohno: Plugin = {
    label: "ohno (embedded IPAM)",
    bin: OHNO,
    host: ohnoHost,
    conf: {
      cniVersion: "1.0.0",
      name: "benchohno",
      type: "ohno",
      bridge: "bench0",
      ipam: { type: "ohno", dataDir: `${dir}/ohno`, ranges: [[{ subnet: "10.70.0.0/16" }]] },
    },
  };
  const ref: Plugin = {
    label: "bridge + host-local",
    bin: `${REF_CNI_DIR}/bridge`,
    host: refHost,
    conf: {
      cniVersion: "1.0.0",
      name: "benchref",
      type: "bridge",
      bridge: "bench0",
      isGateway: true,
      isDefaultGateway: true,
      ipam: { type: "host-local", dataDir: `${dir}/ref`, ranges: [[{ subnet: "10.71.0.0/16" }]] },
    },
  };
  try {
    await compareAddDel({
      ohno,
      ref,
      pods,
      serial,
      concurrent,
      width,
      log,
      titles: {
        latency: "CNI ADD/DEL latency",
        rate: "pods per second",
        phases: "where ohno's ADD time goes",
      },
      phases: {
        ipam: "IPAM (local store: read, pick, one commit under flock)",
        host: "host side (netlink: bridge, veth with its pod end in the pod)",
        pod: "pod side (netlink in the pod: addresses, routes)",
      },
    });
    const ipAlone: number[] = [];
    for (let i = 0; i < 20; i++) {
      ipAlone.push(
        await timeIt(() => runCommand(ohnoHost.ns, "ip", { args: ["-batch", "/dev/null"] })),
      );
    }
    note(`(one bare \`ip -batch\` process costs ${ms(summarize(ipAlone).p50)} ms p50 here)`);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
