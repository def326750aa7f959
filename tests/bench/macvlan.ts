/**
 * CNI ADD/DEL in macvlan mode: ohno (`mode: "macvlan"`, embedded IPAM) next to the
 * reference `macvlan` + `host-local` in the same run, each in a node namespace of its own
 * whose uplink `up0` (a veth holding the default route) is the master. Serial latency
 * (p50/p99, the two interleaved) and throughput at concurrency 8, with ratios.
 */
import { ip } from "../../netns/mod.ts";
import { OHNO, REF_CNI_DIR } from "../support/ohno.ts";
import { type TempNetns, tempNetns, tempNetnsSet } from "../support/netns.ts";
import { call, type Plugin, pool } from "./cni.ts";
import { ms, printTable, ratio, summarize, timeIt } from "./stats.ts";

async function withUplink(host: TempNetns): Promise<void> {
  const run = (args: string[]) => ip(args, { netns: host.ns });
  await run(["link", "add", "up0", "type", "veth", "peer", "name", "up0p"]);
  await run(["link", "set", "up0p", "up"]);
  await run(["link", "set", "up0", "up"]);
  await run(["addr", "add", "192.168.77.1/24", "dev", "up0"]);
  await run(["route", "add", "default", "via", "192.168.77.254", "dev", "up0"]);
}

export async function benchMacvlan(serial = 100, concurrent = 64, width = 8): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ohnot-bench-" });
  await using ohnoHost = await tempNetns("mo");
  await using refHost = await tempNetns("mr");
  await using pods = await tempNetnsSet(Math.max(serial, concurrent), "mp");
  await withUplink(ohnoHost);
  await withUplink(refHost);
  const ohno: Plugin = {
    label: "ohno macvlan (embedded IPAM)",
    bin: OHNO,
    host: ohnoHost,
    conf: {
      cniVersion: "1.0.0",
      name: "benchmvohno",
      type: "ohno",
      mode: "macvlan",
      master: "up0",
      ipam: { type: "ohno", dataDir: `${dir}/ohno`, ranges: [[{ subnet: "10.72.0.0/16" }]] },
    },
  };
  const ref: Plugin = {
    label: "macvlan + host-local",
    bin: `${REF_CNI_DIR}/macvlan`,
    host: refHost,
    conf: {
      cniVersion: "1.0.0",
      name: "benchmvref",
      type: "macvlan",
      master: "up0",
      mode: "bridge",
      ipam: {
        type: "host-local",
        dataDir: `${dir}/ref`,
        ranges: [[{ subnet: "10.73.0.0/16" }]],
        routes: [{ dst: "0.0.0.0/0" }],
      },
    },
  };
  try {
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
      const add = await timeIt(() =>
        pool(list, width, ({ pod, i }) => call(p, "ADD", pod, `c${i}`))
      );
      const del = await timeIt(() =>
        pool(list, width, ({ pod, i }) => call(p, "DEL", pod, `c${i}`))
      );
      return { add: (concurrent / add) * 1000, del: (concurrent / del) * 1000 };
    };
    const rOhno = await rate(ohno);
    const rRef = await rate(ref);
    const s = (x: number[]) => summarize(x);
    const [oa, od, ra, rd] = [s(lat.ohno.add), s(lat.ohno.del), s(lat.ref.add), s(lat.ref.del)];
    printTable(`macvlan ADD/DEL latency, ${serial} serial calls each, interleaved (ms)`, [
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
    printTable(`macvlan pods per second at concurrency ${width} (${concurrent} pods)`, [
      "plugin",
      "ADD/s",
      "DEL/s",
    ], [
      [ohno.label, rOhno.add.toFixed(1), rOhno.del.toFixed(1)],
      [ref.label, rRef.add.toFixed(1), rRef.del.toFixed(1)],
      ["ratio ohno/reference", ratio(rOhno.add, rRef.add), ratio(rOhno.del, rRef.del)],
    ]);

    // Where ohno's macvlan ADD goes, from its own debug timing line (20 ADDs).
    const log = `${dir}/ohno.log`;
    const phases: Record<string, number[]> = {
      startup: [],
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
      phases.ipam!.push(f.ipam ?? NaN);
      phases.host!.push((f.host ?? NaN) - (f.ipam ?? NaN));
      phases.pod!.push((f.pod ?? NaN) - (f.host ?? NaN));
      phases.total!.push(wall);
    }
    const p50 = (k: string) => ms(summarize(phases[k]!).p50);
    printTable("where ohno's macvlan ADD time goes (p50 of 20, ms)", ["phase", "ms"], [
      ["process start → verb (Deno start-up, module load, config)", p50("startup")],
      ["IPAM (local store)", p50("ipam")],
      ["host side (one ip -batch: the slave, straight into the pod)", p50("host")],
      ["pod side (one ip -batch in the pod)", p50("pod")],
      ["whole call as the runtime sees it", p50("total")],
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
