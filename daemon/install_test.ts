import { assertEquals } from "../tests/support/assert.ts";
import { conflist } from "./install.ts";

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
