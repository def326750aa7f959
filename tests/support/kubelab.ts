/**
 * A lab whose agents talk to the fake Kubernetes API server, listening on the lab's
 * gateway address (172.31.0.1:6443) inside the lab namespace where the agents reach it.
 * `await using k = await kubeLab({ name, nodes: 2 })` brings it up with a Node per lab
 * node, and takes all of it down even when the test (or the bring-up) fails.
 * @module
 */

import * as labs from "../../lab/lab.ts";
import { type IpAddr, ipJson } from "../../netns/ip.ts";
import { listNamedNetns } from "../../netns/manage.ts";
import { Netns } from "../../netns/netns.ts";
import { FakeKube } from "./fakekube.ts";
import { OHNO } from "./ohno.ts";
import { within } from "./wait.ts";

export interface KubeLab extends AsyncDisposable {
  name: string;
  fake: FakeKube;
}

const GATEWAY = "172.31.0.1";

export async function kubeLab(opts: {
  name: string;
  nodes: number;
  extraConfig?: Record<string, unknown>;
}): Promise<KubeLab> {
  const { name } = opts;
  const dir = await Deno.makeTempDir({ prefix: "ohnot-kube-" });
  const kubeconfig = `${dir}/kubeconfig`;
  await Deno.writeTextFile(
    kubeconfig,
    `apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: http://${GATEWAY}:6443\n` +
      `users:\n- name: agent\n  user: {}\ncontexts:\n- name: lab\n  context:\n    cluster: lab\n    user: agent\n` +
      `current-context: lab\n`,
  );
  let fake: FakeKube | undefined;
  const up = labs.up({
    name,
    nodes: opts.nodes,
    ohno: OHNO,
    kubeconfig,
    ...(opts.extraConfig ? { extraConfig: opts.extraConfig } : {}),
  });
  const down = async () => {
    await fake?.[Symbol.asyncDispose]();
    // A lab still coming up must finish (or fail) first, or it would make namespaces
    // after the take-down.
    await up.catch(() => {});
    await labs.down(name).catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    // The agents retry until the API server answers: start it as soon as the lab
    // namespace holds the gateway address (the namespace exists a moment before).
    // Its file appears a moment before it is a namespace (`ip netns add` creates the file,
    // then binds the namespace onto it): wait until it opens as one.
    let opened: Netns | undefined;
    await within(20_000, "the lab namespace", () => {
      if (!listNamedNetns().includes(`ohno-lab-${name}`)) return false;
      try {
        opened = Netns.named(`ohno-lab-${name}`);
        return true;
      } catch {
        return false;
      }
    });
    using labNs = opened!;
    await within(20_000, `the lab's gateway address ${GATEWAY}`, async () => {
      const addrs = await ipJson<IpAddr[]>(["-4", "addr", "show"], { netns: labNs })
        .catch(() => []);
      return addrs.some((a) => a.addr_info.some((i) => i.local === GATEWAY));
    });
    fake = await FakeKube.start({}, { hostname: GATEWAY, port: 6443, netns: labNs });
    for (let i = 1; i <= opts.nodes; i++) {
      fake.putNode(`node${i}`, {
        internalIPs: [`172.31.0.${10 + i}`, `fd00:172:31::${10 + i}`],
      });
    }
    await up;
  } catch (e) {
    await down();
    throw e;
  }
  return { name, fake, [Symbol.asyncDispose]: down };
}
