/**
 * Where the Kubernetes API is and how to authenticate: in-cluster (the pod's service
 * account) or a kubeconfig file (token or client certificate). Kubernetes is off when
 * neither is available: {@link resolveKubeConnection} returns undefined.
 * @module
 */

import { parse as parseYaml } from "yaml";
import { namedError } from "../../lib/errors.ts";

/** The default service-account directory mounted into every pod. */
const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/** How to reach one API server. */
export interface KubeConnection {
  /** `https://10.96.0.1:443`, `http://127.0.0.1:8080`. */
  server: string;
  /** CA bundle (PEM) to verify the server with; the system roots when absent. */
  caPem?: string;
  /** Client certificate and key (PEM), for certificate authentication. */
  clientCertPem?: string;
  clientKeyPem?: string;
  /** A bearer token. */
  token?: string;
  /** A file holding the bearer token, re-read as it rotates (projected service-account tokens). */
  tokenFile?: string;
  /** Where this came from, for messages (`in-cluster`, `kubeconfig /root/.kube/config`). */
  source: string;
}

/** The configuration is missing, unreadable or uses something ohno does not support. */
export class KubeConfigError extends namedError("KubeConfigError") {}

/** Whether the environment looks like a pod (`KUBERNETES_SERVICE_HOST` set). */
function inCluster(
  env: (k: string) => string | undefined = (k) => Deno.env.get(k),
): boolean {
  return !!env("KUBERNETES_SERVICE_HOST");
}

/**
 * The in-cluster connection: `KUBERNETES_SERVICE_HOST`/`_PORT`, the service account's
 * token (re-read as it rotates) and CA from `dir`.
 */
export function inClusterConnection(
  opts: { env?: (k: string) => string | undefined; dir?: string } = {},
): KubeConnection {
  const env = opts.env ?? ((k) => Deno.env.get(k));
  const dir = opts.dir ?? SERVICE_ACCOUNT_DIR;
  const host = env("KUBERNETES_SERVICE_HOST");
  const port = env("KUBERNETES_SERVICE_PORT") || "443";
  if (!host) throw new KubeConfigError("not in a cluster: KUBERNETES_SERVICE_HOST is not set");
  const tokenFile = `${dir}/token`;
  let caPem: string;
  try {
    Deno.statSync(tokenFile);
    caPem = Deno.readTextFileSync(`${dir}/ca.crt`);
  } catch (e) {
    throw new KubeConfigError(
      `in-cluster config: cannot read the service account in ${dir}: ${(e as Error).message}`,
      { cause: e },
    );
  }
  const h = host.includes(":") ? `[${host}]` : host;
  return { server: `https://${h}:${port}`, caPem, tokenFile, source: "in-cluster" };
}

interface KubeconfigDoc {
  "current-context"?: string;
  clusters?: { name: string; cluster?: Record<string, unknown> }[];
  users?: { name: string; user?: Record<string, unknown> }[];
  contexts?: { name: string; context?: { cluster?: string; user?: string } }[];
}

/**
 * Reads a kubeconfig file (YAML or JSON) and returns the connection of its current
 * context (or `context`). Relative file paths in it are relative to the file, as kubectl
 * reads them. Supported: server, certificate-authority(-data), token, tokenFile,
 * client-certificate(-data), client-key(-data). Not supported (a clear error): exec and
 * auth-provider plugins, username/password, insecure-skip-tls-verify on https.
 */
export function kubeconfigConnection(
  path: string,
  opts: { context?: string } = {},
): KubeConnection {
  let doc: KubeconfigDoc;
  try {
    doc = parseYaml(Deno.readTextFileSync(path)) as KubeconfigDoc;
  } catch (e) {
    throw new KubeConfigError(`kubeconfig ${path}: ${(e as Error).message}`, { cause: e });
  }
  if (!doc || typeof doc !== "object") throw new KubeConfigError(`kubeconfig ${path} is empty`);
  const where = `kubeconfig ${path}`;
  const ctxName = opts.context ?? doc["current-context"];
  if (!ctxName) throw new KubeConfigError(`${where} has no current-context`);
  const ctx = doc.contexts?.find((c) => c.name === ctxName)?.context;
  if (!ctx) throw new KubeConfigError(`${where}: context ${JSON.stringify(ctxName)} not found`);
  const cluster = doc.clusters?.find((c) => c.name === ctx.cluster)?.cluster;
  if (!cluster) {
    throw new KubeConfigError(`${where}: cluster ${JSON.stringify(ctx.cluster)} not found`);
  }
  const user = doc.users?.find((u) => u.name === ctx.user)?.user ?? {};
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) || "/" : ".";
  const file = (p: unknown) => {
    const s = String(p);
    const full = s.startsWith("/") ? s : `${dir}/${s}`;
    try {
      return Deno.readTextFileSync(full);
    } catch (e) {
      throw new KubeConfigError(`${where}: cannot read ${full}: ${(e as Error).message}`, {
        cause: e,
      });
    }
  };
  const b64 = (v: unknown, key: string) => {
    try {
      return new TextDecoder().decode(Uint8Array.from(atob(String(v)), (c) => c.charCodeAt(0)));
    } catch {
      throw new KubeConfigError(`${where}: ${key} is not base64`);
    }
  };
  const server = cluster.server;
  if (typeof server !== "string" || !/^https?:\/\//.test(server)) {
    throw new KubeConfigError(
      `${where}: cluster ${ctx.cluster} has no http(s) server (got ${JSON.stringify(server)})`,
    );
  }
  const conn: KubeConnection = { server: server.replace(/\/+$/, ""), source: where };
  if (cluster["certificate-authority-data"]) {
    conn.caPem = b64(cluster["certificate-authority-data"], "certificate-authority-data");
  } else if (cluster["certificate-authority"]) {
    conn.caPem = file(cluster["certificate-authority"]);
  }
  if (cluster["insecure-skip-tls-verify"] && server.startsWith("https:") && !conn.caPem) {
    throw new KubeConfigError(
      `${where}: insecure-skip-tls-verify is not supported; give certificate-authority instead`,
    );
  }
  for (const unsupported of ["exec", "auth-provider", "username", "password"]) {
    if (user[unsupported] !== undefined) {
      throw new KubeConfigError(
        `${where}: user ${ctx.user} uses ${unsupported}, which ohno does not support (use a token or a client certificate)`,
      );
    }
  }
  if (typeof user.token === "string") conn.token = user.token;
  else if (typeof user.tokenFile === "string") {
    conn.tokenFile = user.tokenFile.startsWith("/") ? user.tokenFile : `${dir}/${user.tokenFile}`;
  }
  if (user["client-certificate-data"]) {
    conn.clientCertPem = b64(user["client-certificate-data"], "client-certificate-data");
  } else if (user["client-certificate"]) conn.clientCertPem = file(user["client-certificate"]);
  if (user["client-key-data"]) conn.clientKeyPem = b64(user["client-key-data"], "client-key-data");
  else if (user["client-key"]) conn.clientKeyPem = file(user["client-key"]);
  if (!!conn.clientCertPem !== !!conn.clientKeyPem) {
    throw new KubeConfigError(
      `${where}: user ${ctx.user} has a client certificate without a key or a key without a certificate`,
    );
  }
  return conn;
}

/**
 * The connection ohno uses: the kubeconfig when one is given, else in-cluster when
 * running in a pod, else none (Kubernetes integration off).
 */
export function resolveKubeConnection(
  opts: {
    kubeconfig?: string | undefined;
    env?: (k: string) => string | undefined;
    serviceAccountDir?: string;
  } = {},
): KubeConnection | undefined {
  if (opts.kubeconfig) return kubeconfigConnection(opts.kubeconfig);
  const env = opts.env ?? ((k) => Deno.env.get(k));
  if (!inCluster(env)) return undefined;
  return inClusterConnection({
    env,
    ...(opts.serviceAccountDir ? { dir: opts.serviceAccountDir } : {}),
  });
}
