/**
 * The namespace driver against the real kernel: every test builds its topology in
 * namespaces it creates and removes.
 */
import {
  assert,
  assertEquals,
  assertMatch,
  assertNotEquals,
  assertRejects,
  assertThrows,
} from "./support/assert.ts";
import { tempNetns, tempNetnsSet } from "./support/netns.ts";
import {
  IpExistsError,
  IpInvalidError,
  IpNotFoundError,
  NetnsError,
  NetnsNotFoundError,
} from "../netns/errors.ts";
import { ip, type IpAddr, IpBatch, ipJson, type IpLink } from "../netns/ip.ts";
import { defaultRouteInterface, linkMtu, linkNames } from "../netns/links.ts";
import { currentNetnsInode, Netns, runCommand } from "../netns/netns.ts";
import { sysctlGet, sysctlSet } from "../netns/sysctl.ts";

/** The namespace inode a process sees, as `readlink /proc/self/ns/net` prints it. */
function inodeOf(readlink: string): number {
  const m = /net:\[(\d+)\]/.exec(readlink);
  assert(m, `unexpected readlink output ${readlink}`);
  return Number(m[1]);
}

Deno.test("a veth pair across two namespaces, addressed by spawn-in and by batch, pings", async () => {
  await using a = await tempNetns("a");
  await using b = await tempNetns("b");
  // Create in a, move the peer to b: one batch in a.
  await new IpBatch()
    .add("link", "add", "va", "type", "veth", "peer", "name", "vb")
    .add("link", "set", "vb", "netns", b.name)
    .add("link", "set", "va", "up")
    .run({ netns: a.ns });
  // Address in a by a plain spawn-in, address in b by a batch.
  const r = await runCommand(a.ns, "ip", { args: ["addr", "add", "10.99.0.1/24", "dev", "va"] });
  assertEquals(r.code, 0, r.stderr);
  await new IpBatch()
    .add("addr", "add", "10.99.0.2/24", "dev", "vb")
    .add("link", "set", "vb", "up")
    .run({ netns: b.ns });

  const addrs = await ipJson<IpAddr[]>(["addr", "show", "dev", "vb"], { netns: b.ns });
  assertEquals(addrs[0]?.addr_info.find((i) => i.family === "inet")?.local, "10.99.0.2");
  const ping = await runCommand(a.ns, "ping", { args: ["-c", "1", "-W", "2", "10.99.0.2"] });
  assertEquals(ping.code, 0, ping.stdout + ping.stderr);
  // And the root namespace never saw either end.
  const rootLinks = await ipJson<IpLink[]>(["link", "show"]);
  assert(!rootLinks.some((l) => l.ifname === "va" || l.ifname === "vb"));
});

Deno.test("the setns round trip returns to the original namespace, also after a throw", async () => {
  await using t = await tempNetns("rt");
  const home = currentNetnsInode();
  assertNotEquals(t.ns.inode, home);
  const inside = t.ns.run(() => currentNetnsInode());
  assertEquals(inside, t.ns.inode);
  assertEquals(currentNetnsInode(), home);
  assertThrows(() =>
    t.ns.run(() => {
      throw new RangeError("boom");
    }), RangeError);
  assertEquals(currentNetnsInode(), home);
});

Deno.test("nested sections return to the enclosing namespace, not home", async () => {
  await using a = await tempNetns("na");
  await using b = await tempNetns("nb");
  const home = currentNetnsInode();
  const seen = a.ns.run(() => {
    const inB = b.ns.run(() => currentNetnsInode());
    return [inB, currentNetnsInode()];
  });
  assertEquals(seen, [b.ns.inode, a.ns.inode]);
  assertEquals(currentNetnsInode(), home);
});

Deno.test("an async section is refused and the thread is back home", async () => {
  await using t = await tempNetns("as");
  const home = currentNetnsInode();
  assertThrows(() => t.ns.run(async () => {}), NetnsError, "must be synchronous");
  assertEquals(currentNetnsInode(), home);
});

Deno.test("50 concurrent spawn-ins into 50 namespaces each land in their own", async () => {
  await using set = await tempNetnsSet(50, "c");
  const children = set.map((t) =>
    t.ns.spawn("readlink", { args: ["/proc/self/ns/net"], stdout: "piped", stderr: "piped" })
  );
  const outs = await Promise.all(children.map((c) => c.output()));
  const seen = outs.map((o) => inodeOf(new TextDecoder().decode(o.stdout)));
  assertEquals(seen, set.map((t) => t.ns.inode));
  assertEquals(new Set(seen).size, 50);
  const home = await runCommand(undefined, "readlink", { args: ["/proc/self/ns/net"] });
  assertEquals(inodeOf(home.stdout), currentNetnsInode());
});

Deno.test("opening a missing namespace gives NetnsNotFoundError", () => {
  const e = assertThrows(
    () => Netns.open("/var/run/netns/ohnot-does-not-exist"),
    NetnsNotFoundError,
  );
  assertEquals(e.path, "/var/run/netns/ohnot-does-not-exist");
  assertThrows(() => Netns.open("/proc/999999999/ns/net"), NetnsNotFoundError);
  assertThrows(() => Netns.open("relative/path"), NetnsNotFoundError);
});

Deno.test("opening a file that is not a namespace gives NetnsNotFoundError", async () => {
  const f = await Deno.makeTempFile({ prefix: "ohnot-notns-" });
  try {
    const e = assertThrows(() => Netns.open(f), NetnsNotFoundError);
    assertMatch(String((e.cause as Error)?.message), /not a network namespace/);
  } finally {
    await Deno.remove(f);
  }
});

Deno.test("a closed handle cannot be entered", async () => {
  await using t = await tempNetns("cl");
  const h = Netns.open(t.path);
  h.close();
  assertThrows(() => h.run(() => 1), NetnsError, "closed");
});

Deno.test("ip failures are typed and carry the command and ip's stderr", async () => {
  await using t = await tempNetns("er");
  const exists = await assertRejects(
    () => ip(["link", "add", "lo", "type", "dummy"], { netns: t.ns }),
    Error,
  );
  // dummy may be missing from this kernel; either way the error is typed and informative.
  assert(exists instanceof IpExistsError || exists.name === "IpUnsupportedError", exists.message);
  const missing = await assertRejects(
    () => ip(["link", "del", "nope0"], { netns: t.ns }),
    IpNotFoundError,
  );
  assertEquals(missing.command, "link del nope0");
  assertMatch(missing.stderr, /Cannot find device/);
  assertEquals(missing.netns, t.path);
  await assertRejects(
    () => ip(["addr", "add", "10.1.2.3/99", "dev", "lo"], { netns: t.ns }),
    IpInvalidError,
  );
});

Deno.test("a failing batch reports the command that failed and stops there", async () => {
  await using t = await tempNetns("bf");
  const e = await assertRejects(
    () =>
      new IpBatch()
        .add("link", "add", "v1", "type", "veth", "peer", "name", "v2")
        .add("link", "add", "v1", "type", "veth", "peer", "name", "v3")
        .add("link", "add", "v4", "type", "veth", "peer", "name", "v5")
        .run({ netns: t.ns }),
    IpExistsError,
  );
  assertEquals(e.command, "link add v1 type veth peer name v3");
  const names = (await ipJson<IpLink[]>(["link", "show"], { netns: t.ns })).map((l) => l.ifname);
  assert(names.includes("v1") && !names.includes("v4"), names.join(","));
});

Deno.test("batch arguments with blanks and quotes reach ip as one word; '#' is refused up front", async () => {
  await using t = await tempNetns("bq");
  for (const alias of ["an alias with blanks", `say "hi"`, "it's", "back\\"]) {
    await new IpBatch().add("link", "set", "dev", "lo", "alias", alias).run({ netns: t.ns });
    const lo = await ipJson<{ ifalias?: string }[]>(["link", "show", "dev", "lo"], { netns: t.ns });
    assertEquals(lo[0]?.ifalias, alias);
  }
  assertThrows(() => new IpBatch().add("link", "set", "dev", "lo", "alias", "a#b"), TypeError);
});

Deno.test("sysctl written inside a namespace stays there", async () => {
  await using t = await tempNetns("sy");
  const rootBefore = sysctlGet("net.ipv4.ip_forward");
  sysctlSet("net.ipv4.ip_forward", 1, { netns: t.ns });
  assertEquals(sysctlGet("net.ipv4.ip_forward", { netns: t.ns }), "1");
  assertEquals(sysctlGet("net.ipv4.ip_forward"), rootBefore);
  sysctlSet("net/ipv4/conf/lo/rp_filter", 0, { netns: t.ns });
  assertEquals(sysctlGet("net/ipv4/conf/lo/rp_filter", { netns: t.ns }), "0");
});

Deno.test("a sysctl that does not exist is an error naming the key", async () => {
  await using t = await tempNetns("sx");
  assertThrows(
    () => sysctlSet("net.ipv4.no_such_knob", 1, { netns: t.ns }),
    NetnsError,
    "no_such_knob",
  );
});

Deno.test("a fresh process that opens a namespace first stays home", async () => {
  await using t = await tempNetns("fr");
  const script = `
    import { Netns, currentNetnsInode } from "${
    new URL("../netns/netns.ts", import.meta.url).href
  }";
    const before = currentNetnsInode();
    const ns = Netns.open(${JSON.stringify(t.path)});
    const after = currentNetnsInode();
    const inside = ns.run(() => currentNetnsInode());
    console.log(JSON.stringify({ before, after, inside, home: currentNetnsInode() }));
  `;
  const r = await runCommand(undefined, Deno.execPath(), {
    args: ["eval", "--quiet", "--no-prompt", "--cached-only", script],
  });
  assertEquals(r.code, 0, r.stderr);
  const v = JSON.parse(r.stdout);
  assertEquals(v.after, v.before);
  assertEquals(v.home, v.before);
  assertEquals(v.inside, t.ns.inode);
});

Deno.test("a JSON batch changes and reads state in one process", async () => {
  await using t = await tempNetns("bj");
  const [br, veth] = await new IpBatch()
    .add("link", "add", "name", "br9", "type", "bridge")
    .add("link", "add", "v9", "type", "veth", "peer", "name", "v9p")
    .add("link", "set", "v9", "master", "br9")
    .add("link", "show", "dev", "br9")
    .add("link", "show", "dev", "v9")
    .runJson<IpLink[]>({ netns: t.ns });
  assertEquals(br?.[0]?.ifname, "br9");
  assertEquals(veth?.[0]?.master, "br9");
  assertMatch(veth?.[0]?.address ?? "", /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
});

Deno.test("linkNames lists a namespace's interfaces without spawning", async () => {
  await using t = await tempNetns("ln");
  await ip(["link", "add", "lnk0", "type", "veth", "peer", "name", "lnk1"], { netns: t.ns });
  assertEquals(linkNames({ netns: t.ns }).sort(), ["lnk0", "lnk1", "lo"]);
  assert(!linkNames().includes("lnk0"));
});

Deno.test("linkMtu and defaultRouteInterface read the namespace they are asked about", async () => {
  await using t = await tempNetns("mt");
  await new IpBatch()
    .add("link", "add", "up0", "mtu", "1400", "type", "veth", "peer", "name", "up1")
    .add("link", "set", "up0", "up")
    .add("addr", "add", "10.77.0.1/24", "dev", "up0")
    .add("route", "add", "default", "via", "10.77.0.254", "dev", "up0", "onlink")
    .run({ netns: t.ns });
  assertEquals(linkMtu("up0", { netns: t.ns }), 1400);
  assertEquals(linkMtu("nope0", { netns: t.ns }), undefined);
  assertEquals(defaultRouteInterface({ netns: t.ns }), "up0");
  await using e = await tempNetns("mte");
  assertEquals(defaultRouteInterface({ netns: e.ns }), undefined);
});
