/**
 * The Kubernetes lab's certificates (lab/kube.ts): a CA, the API server's serving pair,
 * client pairs for the admin, the controller-manager, the scheduler, each kubelet and
 * etcd, the service-account key pair, and kubeconfigs around them. Made with openssl
 * (EC P-256, valid 2 days) each time a lab starts.
 * @module
 */

import { runCommand } from "../netns/netns.ts";

/** The first address of the lab's service range: the `kubernetes` service. */
export const SERVICE_IP = "10.96.0.1";

/** Runs `cmd` here; throws with its stderr when it fails. Returns stdout. */
export async function mustRun(cmd: string, args: string[], what = cmd): Promise<string> {
  const r = await runCommand(undefined, cmd, { args });
  if (!r.success) {
    throw new Error(`${what}: ${cmd} exited with ${r.code}: ${r.stderr.trim().slice(-800)}`);
  }
  return r.stdout;
}

/** One certificate signed by the lab's CA (openssl, EC P-256, valid 2 days). */
async function cert(
  pki: string,
  file: string,
  subject: string,
  usage: "server" | "client" | "both",
  sans: string[] = [],
): Promise<void> {
  const eku = usage === "server"
    ? "serverAuth"
    : usage === "client"
    ? "clientAuth"
    : "serverAuth,clientAuth";
  const cnf = `${pki}/${file}.cnf`;
  Deno.writeTextFileSync(
    cnf,
    [
      "[req]",
      "distinguished_name = dn",
      "[dn]",
      "[ext]",
      "basicConstraints = critical,CA:FALSE",
      "keyUsage = critical,digitalSignature,keyEncipherment",
      `extendedKeyUsage = ${eku}`,
      ...(sans.length ? [`subjectAltName = ${sans.join(",")}`] : []),
      "",
    ].join("\n"),
  );
  await mustRun("openssl", [
    ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"],
    ...["-keyout", `${pki}/${file}.key`, "-out", `${pki}/${file}.crt`, "-days", "2"],
    ...["-subj", subject, "-CA", `${pki}/ca.crt`, "-CAkey", `${pki}/ca.key`],
    ...["-config", cnf, "-extensions", "ext"],
  ], `certificate ${file}`);
}

export async function makePki(pki: string, gateway: string, nodes: string[]): Promise<void> {
  Deno.mkdirSync(pki, { recursive: true });
  await mustRun("openssl", [
    ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"],
    ...["-keyout", `${pki}/ca.key`, "-out", `${pki}/ca.crt`, "-days", "2"],
    ...["-subj", "/CN=ohno-lab-ca", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
  ], "the lab's CA");
  await cert(pki, "apiserver", "/CN=kube-apiserver", "server", [
    `IP:${gateway}`,
    "IP:127.0.0.1",
    `IP:${SERVICE_IP}`,
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
  ]);
  await cert(
    pki,
    "apiserver-kubelet-client",
    "/O=system:masters/CN=kube-apiserver-kubelet-client",
    "client",
  );
  await cert(pki, "etcd-server", "/CN=etcd", "both", [`IP:${gateway}`, "IP:127.0.0.1"]);
  await cert(pki, "etcd-client", "/CN=etcd-client", "client");
  await cert(pki, "admin", "/O=system:masters/CN=kubernetes-admin", "client");
  await cert(pki, "controller-manager", "/CN=system:kube-controller-manager", "client");
  await cert(pki, "scheduler", "/CN=system:kube-scheduler", "client");
  for (const n of nodes) {
    await cert(pki, `kubelet-${n}`, `/O=system:nodes/CN=system:node:${n}`, "client");
  }
  await mustRun("openssl", [
    "genpkey",
    "-algorithm",
    "RSA",
    "-pkeyopt",
    "rsa_keygen_bits:2048",
    "-out",
    `${pki}/sa.key`,
  ]);
  await mustRun("openssl", ["pkey", "-in", `${pki}/sa.key`, "-pubout", "-out", `${pki}/sa.pub`]);
}

/** A kubeconfig for `user` (a client pair in `pki`) against `server`. */
export function kubeconfig(pki: string, server: string, user: string): string {
  const b64 = (f: string) => btoa(Deno.readTextFileSync(`${pki}/${f}`));
  return JSON.stringify(
    {
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "lab", cluster: { server, "certificate-authority-data": b64("ca.crt") } }],
      users: [{
        name: user,
        user: {
          "client-certificate-data": b64(`${user}.crt`),
          "client-key-data": b64(`${user}.key`),
        },
      }],
      contexts: [{ name: "lab", context: { cluster: "lab", user } }],
      "current-context": "lab",
    },
    null,
    2,
  );
}
