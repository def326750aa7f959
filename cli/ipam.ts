/**
 * `ohno ipam …`: show and repair cluster address state (docs/cli.md). Tables for people,
 * `-o json` for scripts; errors go to main.ts (stderr, non-zero exit).
 * @module
 */

import type { Command } from "commander";
import { ClusterIpam } from "../ipam/cluster.ts";
import type { AllocationRow } from "../ipam/records.ts";
import { checkEmbedded, embeddedAllocations } from "../ipam/ranges.ts";
import { isIp, normalizeIp } from "../ipam/addr.ts";
import type { Store } from "../ipam/store.ts";
import { type DatastoreFlags, openDatastore, resolveDatastore } from "./datastore.ts";
import { CliError } from "./errors.ts";
import { outputFormat, print, printJson, table } from "./output.ts";

type Out = { output: string };

/** Runs `fn` with the store the global options name, closing it afterwards. */
async function withIpam<T>(
  cmd: Command,
  fn: (ipam: ClusterIpam, store: Store) => Promise<T>,
): Promise<T> {
  const flags = cmd.optsWithGlobals() as DatastoreFlags;
  const store = await openDatastore(resolveDatastore(flags), { http: true });
  try {
    return await fn(new ClusterIpam(store), store);
  } finally {
    await store.close();
  }
}

/** "3d", "5h", "12m", "40s". */
export function age(iso: string, now = Date.now()): string {
  const s = Math.max(0, Math.floor((now - Date.parse(iso)) / 1000));
  if (Number.isNaN(s)) return "-";
  if (s >= 86400) return `${Math.floor(s / 86400)}d`;
  if (s >= 3600) return `${Math.floor(s / 3600)}h`;
  if (s >= 60) return `${Math.floor(s / 60)}m`;
  return `${s}s`;
}

const pod = (r: { podNamespace?: string | undefined; podName?: string | undefined }) =>
  r.podName ? `${r.podNamespace ?? "-"}/${r.podName}` : "-";

function printRows(rows: AllocationRow[], fmt: "table" | "wide" | "json"): void {
  if (fmt === "json") return printJson(rows);
  if (rows.length === 0) return print("no allocations");
  const wide = fmt === "wide";
  print(table(
    ["IP", "NODE", "POD", "CONTAINER", "IFNAME", "AGE", ...(wide ? ["POOL", "BLOCK"] : [])],
    rows.map((r) => [
      r.ip,
      r.node,
      pod(r),
      wide ? r.containerID : r.containerID.slice(0, 12),
      r.ifname,
      age(r.createdAt),
      ...(wide ? [r.pool, r.block] : []),
    ]),
  ));
}

/**
 * Makes `command` a read-only listing of what `read` returns: a table (`headers`, one
 * `row` per item; `empty` when there are none) or, with `-o json`, the JSON list.
 */
function listing<T>(command: Command, o: {
  read: (ipam: ClusterIpam) => Promise<T[]>;
  empty: string;
  headers: string[];
  row: (item: T) => string[];
}): void {
  command
    .option("-o, --output <format>", "table or json", "table")
    .action(async (opts: Out, cmd: Command) => {
      const fmt = outputFormat(opts.output, ["table", "json"] as const);
      await withIpam(cmd, async (c) => {
        const items = await o.read(c);
        if (fmt === "json") return printJson(items);
        if (!items.length) return print(o.empty);
        print(table(o.headers, items.map(o.row)));
      });
    });
}

export function registerIpam(program: Command): void {
  const ipam = program.command("ipam")
    .description("show and repair cluster address state")
    .option("--datastore <type>", "etcd or local (env OHNO_DATASTORE)")
    .option("--etcd-endpoints <urls>", "comma-separated etcd URLs (env OHNO_ETCD_ENDPOINTS)")
    .option("--etcd-ca <file>", "CA certificate for etcd (env OHNO_ETCD_CA)")
    .option("--etcd-cert <file>", "client certificate for etcd (env OHNO_ETCD_CERT)")
    .option("--etcd-key <file>", "client key for etcd (env OHNO_ETCD_KEY)")
    .option("--data-dir <dir>", "local store directory (env OHNO_DATA_DIR)")
    .option(
      "--config <file>",
      "the agent's config file (env OHNO_CONFIG; default /etc/ohno/ohno.json)",
    );

  registerLs(ipam);
  registerLists(ipam);
  registerPool(ipam);
  registerBlocks(ipam);
  registerShow(ipam);
  registerAllocate(ipam);
  registerRelease(ipam);
  registerReserve(ipam);
  registerGc(ipam);
  registerCheck(ipam);
}

/** `ipam ls`: the allocations, filtered by node or pool. */
function registerLs(ipam: Command): void {
  ipam.command("ls")
    .description("list allocations: IP, node, pod, container, ifname, age")
    .option("-o, --output <format>", "table, wide or json", "table")
    .option("--node <node>", "only this node's")
    .option("--pool <cidr>", "only this pool's")
    .action(async (opts: Out & { node?: string; pool?: string }, cmd: Command) => {
      const fmt = outputFormat(opts.output, ["table", "wide", "json"] as const);
      await withIpam(cmd, async (c, store) => {
        const rows = await c.list({ node: opts.node, pool: opts.pool });
        if (!opts.node && !opts.pool && store.kind === "local") {
          rows.push(...await embeddedAllocations(store));
        }
        printRows(rows, fmt);
      });
    });
}

/** `ipam pools` and `ipam nodes`: read-only listings. */
function registerLists(ipam: Command): void {
  listing(ipam.command("pools").description("list pools"), {
    read: (c) => c.pools(),
    empty: "no pools",
    headers: ["POOL", "BLOCK SIZE", "CREATED"],
    row: (p) => [p.cidr, `/${p.blockPrefix}`, p.createdAt],
  });
  listing(ipam.command("nodes").description("nodes with their addresses and blocks"), {
    read: (c) => c.peers(),
    empty: "no nodes",
    headers: ["NODE", "ADDRESSES", "BLOCKS"],
    row: (p) => [p.node, p.ips.join(", "), p.blocks.join(", ")],
  });
}

/** `ipam pool add|rm`. */
function registerPool(ipam: Command): void {
  const pool = ipam.command("pool").description("add or remove a pool");
  pool.command("add <cidr>")
    .description("add a pool (IPv4 blocks default to /24, IPv6 to /64)")
    .option("--block-prefix <n>", "prefix length of node blocks")
    .action(async (cidr: string, opts: { blockPrefix?: string }, cmd: Command) => {
      const bp = opts.blockPrefix === undefined ? undefined : Number(opts.blockPrefix);
      if (bp !== undefined && !Number.isInteger(bp)) {
        throw new CliError(`--block-prefix ${JSON.stringify(opts.blockPrefix)} is not a number`, 2);
      }
      await withIpam(cmd, async (c) => {
        const p = await c.addPool(cidr, bp);
        print(`pool ${p.cidr} with /${p.blockPrefix} blocks`);
      });
    });
  pool.command("rm <cidr>")
    .description("remove a pool (refused while addresses are allocated in it)")
    .action(async (cidr: string, _opts: unknown, cmd: Command) => {
      await withIpam(cmd, async (c) => {
        await c.removePool(cidr);
        print(`pool ${cidr} removed`);
      });
    });
}

/** `ipam blocks`: each node's blocks with utilisation. */
function registerBlocks(ipam: Command): void {
  ipam.command("blocks")
    .description("each node's blocks with utilisation")
    .option("-o, --output <format>", "table or json", "table")
    .option("--node <node>", "only this node's")
    .action(async (opts: Out & { node?: string }, cmd: Command) => {
      const fmt = outputFormat(opts.output, ["table", "json"] as const);
      await withIpam(cmd, async (c) => {
        const blocks = (await c.blocks()).filter((b) => !opts.node || b.node === opts.node);
        if (fmt === "json") return printJson(blocks);
        if (!blocks.length) return print("no blocks");
        print(table(
          ["BLOCK", "NODE", "POOL", "USED", "FREE", "USE%"],
          blocks.map((b) => {
            const cap = BigInt(b.capacity);
            const pct = cap > 0n ? Number((BigInt(b.used) * 10000n) / cap) / 100 : 100;
            return [
              b.cidr,
              b.node,
              b.pool,
              String(b.used),
              String(cap - BigInt(b.used)),
              `${pct}%`,
            ];
          }),
        ));
      });
    });
}

/** `ipam show`: who holds an address, or what a container holds. */
function registerShow(ipam: Command): void {
  ipam.command("show <ip-or-container>")
    .description("who holds an address, or what a container holds")
    .option("-o, --output <format>", "table or json", "table")
    .action(async (what: string, opts: Out, cmd: Command) => {
      const fmt = outputFormat(opts.output, ["table", "json"] as const);
      await withIpam(cmd, async (c, store) => {
        const all = [
          ...await c.list(),
          ...(store.kind === "local" ? await embeddedAllocations(store) : []),
        ];
        const rows = isIp(what)
          ? all.filter((r) => r.ip === normalizeIp(what))
          : all.filter((r) => r.containerID === what || r.containerID.startsWith(what));
        if (rows.length === 0) throw new CliError(`nothing allocated for ${what}`);
        if (fmt === "json") return printJson(rows);
        for (const r of rows) {
          print(
            table(["FIELD", "VALUE"], [
              ["ip", r.ip],
              ["node", r.node],
              ["pool", r.pool],
              ["block", r.block],
              ["pod", pod(r)],
              ["container", r.containerID],
              ["ifname", r.ifname],
              ["allocated", `${r.createdAt} (${age(r.createdAt)} ago)`],
            ]),
          );
        }
      });
    });
}

/** `ipam allocate`: addresses for a workload that is not a pod. */
function registerAllocate(ipam: Command): void {
  ipam.command("allocate")
    .description("allocate addresses for a workload that is not a pod (one per family)")
    .requiredOption("--node <node>", "the node whose blocks to use")
    .requiredOption("--handle <id>", "the owner, e.g. vm-42 (released with --handle)")
    .option("--ifname <name>", "interface name of the attachment", "eth0")
    .option("--ip <ip...>", "static addresses wanted")
    .option("--create-node", "create the node's record if it has none (else refused)")
    .option("-o, --output <format>", "table or json", "table")
    .action(
      async (
        opts: Out & {
          node: string;
          handle: string;
          ifname: string;
          ip?: string[];
          createNode?: boolean;
        },
        cmd: Command,
      ) => {
        const fmt = outputFormat(opts.output, ["table", "json"] as const);
        await withIpam(cmd, async (c) => {
          // A mistyped node would otherwise get blocks claimed for it that no agent uses.
          if (opts.createNode) await c.createNode(opts.node);
          else if (!await c.node(opts.node)) {
            throw new CliError(
              `node ${opts.node} has no record (see \`ohno ipam nodes\`; its agent writes it ` +
                `when it starts): nothing allocated. To allocate for it anyway, add --create-node`,
            );
          }
          const got = await c.allocate({
            node: opts.node,
            containerID: opts.handle,
            ifname: opts.ifname,
            ...(opts.ip ? { requestedIPs: opts.ip } : {}),
          });
          if (fmt === "json") return printJson(got);
          print(
            table(["ADDRESS", "GATEWAY", "BLOCK"], got.map((g) => [g.address, g.gateway, g.block])),
          );
        });
      },
    );
}

/** `ipam release`: by address, handle, container or node. */
function registerRelease(ipam: Command): void {
  ipam.command("release [ip]")
    .description("release by address, --handle, --container [--ifname], or a whole --node")
    .option("--handle <id>", "release what this handle holds")
    .option("--container <id>", "release what this container holds")
    .option("--ifname <name>", "only this interface of the container")
    .option("--node <node>", "release a node: its blocks, addresses and record")
    .action(
      async (
        ip: string | undefined,
        opts: { handle?: string; container?: string; ifname?: string; node?: string },
        cmd: Command,
      ) => {
        const given = [ip, opts.handle, opts.container, opts.node].filter((x) => x !== undefined);
        if (given.length !== 1) {
          throw new CliError(
            "release needs exactly one of: an IP, --handle, --container, --node",
            2,
          );
        }
        await withIpam(cmd, async (c) => {
          if (opts.node) {
            const r = await c.releaseNode(opts.node);
            return print(
              `node ${opts.node}: released ${r.addresses} attachments and blocks ${
                r.blocks.join(", ") || "(none)"
              }`,
            );
          }
          let targets: { containerID: string; ifname: string }[];
          if (ip !== undefined) {
            if (!isIp(ip)) throw new CliError(`${JSON.stringify(ip)} is not an IP address`, 2);
            const row = (await c.list()).find((r) => r.ip === normalizeIp(ip));
            if (!row) throw new CliError(`${ip} is not allocated`);
            targets = [row];
          } else {
            const id = (opts.handle ?? opts.container)!;
            targets = (await c.handles()).filter((h) =>
              h.containerID === id && (!opts.ifname || h.ifname === opts.ifname)
            );
            if (!targets.length) throw new CliError(`nothing allocated for ${id}`);
          }
          for (const t of targets) {
            const ips = await c.release(t);
            print(`released ${ips.join(", ")} (${t.containerID} ${t.ifname})`);
          }
        });
      },
    );
}

/** `ipam reserve` and `ipam unreserve`. */
function registerReserve(ipam: Command): void {
  ipam.command("reserve <ip>")
    .description("keep an address out of allocation")
    .option("--note <text>", "why", "")
    .action(async (ip: string, opts: { note: string }, cmd: Command) => {
      await withIpam(cmd, async (c) => {
        await c.reserve(ip, opts.note);
        print(`reserved ${normalizeIp(ip)}`);
      });
    });

  ipam.command("unreserve <ip>")
    .description("return a reserved address to allocation")
    .action(async (ip: string, _o: unknown, cmd: Command) => {
      await withIpam(cmd, async (c) => {
        if (!await c.unreserve(ip)) throw new CliError(`${ip} is not reserved`);
        print(`unreserved ${normalizeIp(ip)}`);
      });
    });
}

/** `ipam gc`: release attachments missing from the valid list. */
function registerGc(ipam: Command): void {
  ipam.command("gc")
    .description("release allocations whose attachment is not in the valid list")
    .requiredOption("--valid <file>", "JSON list of {containerID, ifname} to keep ('-' for stdin)")
    .option("--node <node>", "only this node's allocations")
    .option("--dry-run", "show what would be released")
    .action(async (opts: { valid: string; node?: string; dryRun?: boolean }, cmd: Command) => {
      let valid: { containerID: string; ifname: string }[];
      try {
        const text = opts.valid === "-"
          ? await new Response(Deno.stdin.readable).text()
          : Deno.readTextFileSync(opts.valid);
        valid = JSON.parse(text);
        if (!Array.isArray(valid)) throw new Error("not a list");
      } catch (e) {
        throw new CliError(`--valid ${opts.valid}: ${(e as Error).message}`);
      }
      const keep = new Set(valid.map((a) => `${a.containerID}/${a.ifname}`));
      await withIpam(cmd, async (c) => {
        const stale = (await c.handles()).filter((h) =>
          (!opts.node || h.node === opts.node) && !keep.has(`${h.containerID}/${h.ifname}`)
        );
        for (const h of stale) {
          if (!opts.dryRun) await c.release(h);
          print(
            `${opts.dryRun ? "would release" : "released"} ${
              h.ips.join(", ")
            } (${h.containerID} ${h.ifname} on ${h.node})`,
          );
        }
        print(
          `${stale.length} stale attachment${stale.length === 1 ? "" : "s"}${
            opts.dryRun ? " (dry run)" : ""
          }`,
        );
      });
    });
}

/** `ipam check`: consistency check, non-zero exit on any problem. */
function registerCheck(ipam: Command): void {
  ipam.command("check")
    .description("consistency check; exits non-zero on any problem")
    .option("-o, --output <format>", "table or json", "table")
    .action(async (opts: Out, cmd: Command) => {
      const fmt = outputFormat(opts.output, ["table", "json"] as const);
      const report = await withIpam(cmd, async (c, store) => {
        const cluster = await c.check();
        if (store.kind !== "local") return cluster;
        // A local store also holds the plugin's embedded allocations (what `ls` lists).
        const e = await checkEmbedded(store);
        const problems: { kind: string; key: string; message: string }[] = [
          ...cluster.problems,
          ...e.problems,
        ];
        return {
          ...cluster,
          ok: problems.length === 0,
          counts: {
            ...cluster.counts,
            networks: e.networks,
            handles: cluster.counts.handles + e.handles,
            addresses: cluster.counts.addresses + e.addresses,
          },
          problems,
        };
      });
      if (fmt === "json") printJson(report);
      else {
        const n = report.counts;
        print(
          `${n.pools} pools, ${n.blocks} blocks, ${n.nodes} nodes, ${n.handles} attachments, ${n.addresses} addresses`,
        );
        if (report.ok) print("consistent");
        else {print(
            table(
              ["PROBLEM", "KEY", "DETAIL"],
              report.problems.map((p) => [p.kind, p.key, p.message]),
            ),
          );}
      }
      if (!report.ok) throw new CliError("", 1);
    });
}
