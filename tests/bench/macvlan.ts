/**
 * CNI ADD/DEL in macvlan mode: ohno (`mode: "macvlan"`, embedded IPAM) next to the
 * reference `macvlan` + `host-local` in the same run, each in a node namespace of its own
 * whose uplink `up0` (a veth holding the default route) is the master. Serial latency
 * (p50/p99, the two interleaved) and throughput at concurrency 8, with ratios.
 */
import { ip } from "../../netns/ip.ts";
import { OHNO, REF_CNI_DIR } from "../support/ohno.ts";
import { type TempNetns, tempNetns, tempNetnsSet } from "../support/netns.ts";
import { compareAddDel, type Plugin } from "./cni.ts";

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
    await compareAddDel({
      ohno,
      ref,
      pods,
      serial,
      concurrent,
      width,
      log: `${dir}/ohno.log`,
      titles: {
        latency: "macvlan ADD/DEL latency",
        rate: "macvlan pods per second",
        phases: "where ohno's macvlan ADD time goes",
      },
      phases: {
        ipam: "IPAM (local store)",
        host: "host side (netlink: the slave, straight into the pod)",
        pod: "pod side (netlink in the pod)",
      },
    });
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
