import { assert, assertEquals, assertThrows } from "../tests/support/assert.ts";
import { parseCniArgs, parseEnv } from "./env.ts";
import { CniError } from "./errors.ts";

Deno.test("Kubernetes CNI_ARGS parse into pod identity", () => {
  const a = parseCniArgs(
    "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u1;FOO=bar",
  );
  assertEquals([a.podNamespace, a.podName, a.infraContainerId, a.podUid], [
    "ns",
    "web-0",
    "abc",
    "u1",
  ]);
});

Deno.test("podman's IP= and MAC= become the static request", () => {
  const a = parseCniArgs(
    "IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.88.0.5,fd00::5;MAC=0A:58:0A:58:00:05",
  );
  assertEquals([a.ips, a.mac], [["10.88.0.5", "fd00::5"], "0a:58:0a:58:00:05"]);
});

Deno.test("unknown keys fail without IgnoreUnknown", () => {
  const e = assertThrows(() => parseCniArgs("FOO=bar"), CniError);
  assertEquals(e.code, 4);
});

Deno.test("DEL needs no netns; ADD does", () => {
  const env = { CNI_COMMAND: "DEL", CNI_CONTAINERID: "c1", CNI_IFNAME: "eth0" };
  assertEquals(parseEnv(env).netns, "");
  assertThrows(() => parseEnv({ ...env, CNI_COMMAND: "ADD" }), CniError, "CNI_NETNS");
});

Deno.test("GC and STATUS need no container", () => {
  assertEquals(parseEnv({ CNI_COMMAND: "GC", CNI_PATH: "/a::/b" }).path, ["/a", "/b"]);
  assertEquals(parseEnv({ CNI_COMMAND: "STATUS" }).command, "STATUS");
});

Deno.test("an over-long container ID is error 4 with a short message; on DEL it means nothing to do", () => {
  const env = { CNI_COMMAND: "ADD", CNI_CONTAINERID: "c".repeat(10240), CNI_IFNAME: "eth0" };
  const e = assertThrows(() => parseEnv({ ...env, CNI_NETNS: "/run/netns/p" }), CniError);
  assertEquals(e.code, 4);
  assert(e.message.length < 200 && e.message.includes("10240 characters"), e.message);
  const del = parseEnv({ ...env, CNI_COMMAND: "DEL" });
  assert(del.unusableContainerID?.includes("at most 1024"), del.unusableContainerID);
  assertEquals(
    parseEnv({ ...env, CNI_COMMAND: "DEL", CNI_CONTAINERID: "ok" }).unusableContainerID,
    undefined,
  );
});
