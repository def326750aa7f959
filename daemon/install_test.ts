import { assertEquals } from "../tests/support/assert.ts";
import { conflist, conflistsBefore } from "./install.ts";

const base = {
  network: "ohno",
  bridge: "ohno0",
  mtu: 1450,
  socket: "/run/ohno/ipam.sock",
  logFile: "/var/run/log/ohno.log",
};
const types = (l: Record<string, unknown>) => (l.plugins as { type: string }[]).map((p) => p.type);

Deno.test("conflist: cniVersions only as high as every chained plugin speaks", async (t) => {
  await t.step("no portmap: 1.0.0 and 1.1.0", () => {
    const l = conflist(base);
    assertEquals([l.cniVersion, l.cniVersions, types(l)], ["1.0.0", ["1.0.0", "1.1.0"], ["ohno"]]);
  });
  await t.step("portmap up to 1.0.0 (Debian's 1.1.1 plugins): 1.0.0 only", () => {
    const l = conflist({
      ...base,
      portmap: ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"],
    });
    assertEquals([l.cniVersion, l.cniVersions, types(l)], ["1.0.0", ["1.0.0"], [
      "ohno",
      "portmap",
    ]]);
  });
  await t.step("portmap with 1.1.0: both", () => {
    const l = conflist({ ...base, portmap: ["1.0.0", "1.1.0"] });
    assertEquals([l.cniVersion, l.cniVersions, types(l)], ["1.0.0", ["1.0.0", "1.1.0"], [
      "ohno",
      "portmap",
    ]]);
  });
  await t.step("a portmap that speaks none of ohno's versions is not chained", () => {
    const l = conflist({ ...base, portmap: ["0.3.1", "0.4.0"] });
    assertEquals([l.cniVersion, l.cniVersions, types(l)], ["1.0.0", ["1.0.0", "1.1.0"], ["ohno"]]);
  });
});

Deno.test("conflistsBefore: the configurations a runtime would take before ohno's", () => {
  const dir = Deno.makeTempDirSync({ prefix: "ohnot-netd-" });
  try {
    const ours = "10-ohno.conflist";
    for (const f of [ours, "99-loopback.conf", "README", "10-ohno.conflist.bak"]) {
      Deno.writeTextFileSync(`${dir}/${f}`, "{}");
    }
    assertEquals(conflistsBefore(dir, ours), []);
    for (const f of ["05-other.conflist", "00-calico.conf", "01-x.json"]) {
      Deno.writeTextFileSync(`${dir}/${f}`, "{}");
    }
    Deno.mkdirSync(`${dir}/00-dir.conflist`);
    assertEquals(conflistsBefore(dir, ours), ["00-calico.conf", "01-x.json", "05-other.conflist"]);
    assertEquals(conflistsBefore(`${dir}/missing`, ours), []);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
