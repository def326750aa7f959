/**
 * A real etcd (Debian's etcd-server) for tests: data in a temp dir, free loopback ports
 * (or, inside a given namespace, an address of that namespace), optional TLS with
 * certificates made by openssl for the test; `kill()` (SIGKILL) and `stop()` keep the
 * data so `restart()` brings the same cluster back. `await using` removes it all.
 * @module
 */

import { type Netns, runCommand } from "../../netns/netns.ts";

export interface EtcdTls {
  dir: string;
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** A CA that signed nothing here: clients trusting it must be refused. */
  otherCa: string;
}

export interface EtcdFixture extends AsyncDisposable {
  endpoints: string[];
  dataDir: string;
  tls?: EtcdTls;
  /** Whether etcd answers its health endpoint. */
  running(): boolean;
  kill(): Promise<void>;
  stop(): Promise<void>;
  restart(): Promise<void>;
  /** SIGSTOP: connections stay open, nothing is answered; `resume()` is SIGCONT. */
  pause(): void;
  resume(): void;
}

export interface EtcdFixtureOptions {
  tls?: boolean;
  /** The server certificate's subjectAltName (default `IP:<host>,DNS:localhost`). */
  serverSans?: string;
  /** Start inside this namespace, listening on `host` (default 127.0.0.1). */
  netns?: Netns;
  host?: string;
  /** Fixed ports (default: free ones on loopback; 2379/2380 inside a namespace). */
  clientPort?: number;
  peerPort?: number;
}

export const ETCD_BIN = "/usr/bin/etcd";

export function etcdMissing(): string | undefined {
  try {
    Deno.statSync(ETCD_BIN);
    return undefined;
  } catch {
    return "etcd-server is not installed (/usr/bin/etcd)";
  }
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  const r = await runCommand(undefined, "openssl", { args, cwd });
  if (r.code !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr}`);
}

/**
 * A CA, a server certificate for `host` (or for `serverSans`, openssl's subjectAltName
 * syntax), and a client certificate, all by openssl.
 */
export async function makeTls(
  dir: string,
  host: string,
  serverSans = `IP:${host},DNS:localhost`,
): Promise<EtcdTls> {
  Deno.mkdirSync(dir, { recursive: true });
  const sub = (cn: string) => ["-subj", `/CN=${cn}`];
  for (const ca of ["ca", "other-ca"]) {
    await openssl([
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-days",
      "2",
      "-keyout",
      `${ca}.key`,
      "-out",
      `${ca}.pem`,
      ...sub(`ohno test ${ca}`),
    ], dir);
  }
  Deno.writeTextFileSync(
    `${dir}/server.ext`,
    `subjectAltName=${serverSans}\nextendedKeyUsage=serverAuth,clientAuth\n`,
  );
  Deno.writeTextFileSync(`${dir}/client.ext`, `extendedKeyUsage=clientAuth\n`);
  for (const who of ["server", "client"]) {
    await openssl([
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      `${who}.key`,
      "-out",
      `${who}.csr`,
      ...sub(`ohno-${who}`),
    ], dir);
    await openssl([
      "x509",
      "-req",
      "-in",
      `${who}.csr`,
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-days",
      "2",
      "-extfile",
      `${who}.ext`,
      "-out",
      `${who}.pem`,
    ], dir);
  }
  return {
    dir,
    ca: `${dir}/ca.pem`,
    serverCert: `${dir}/server.pem`,
    serverKey: `${dir}/server.key`,
    clientCert: `${dir}/client.pem`,
    clientKey: `${dir}/client.key`,
    otherCa: `${dir}/other-ca.pem`,
  };
}

export async function startEtcd(opts: EtcdFixtureOptions = {}): Promise<EtcdFixture> {
  const dir = await Deno.makeTempDir({ prefix: "ohnot-etcd-" });
  const dataDir = `${dir}/data`;
  const host = opts.host ?? "127.0.0.1";
  const clientPort = opts.clientPort ?? (opts.netns ? 2379 : freePort());
  const peerPort = opts.peerPort ?? (opts.netns ? 2380 : freePort());
  const tls = opts.tls ? await makeTls(`${dir}/tls`, host, opts.serverSans) : undefined;
  const scheme = tls ? "https" : "http";
  const fmt = (h: string) => (h.includes(":") ? `[${h}]` : h);
  const clientUrl = `${scheme}://${fmt(host)}:${clientPort}`;
  const peerUrl = `http://${fmt(host)}:${peerPort}`;
  const args = [
    "--name",
    "ohnotest",
    "--data-dir",
    dataDir,
    "--listen-client-urls",
    clientUrl,
    "--advertise-client-urls",
    clientUrl,
    "--listen-peer-urls",
    peerUrl,
    "--initial-advertise-peer-urls",
    peerUrl,
    "--initial-cluster",
    `ohnotest=${peerUrl}`,
    "--log-level",
    "error",
    ...(tls
      ? [
        "--cert-file",
        tls.serverCert,
        "--key-file",
        tls.serverKey,
        "--trusted-ca-file",
        tls.ca,
        "--client-cert-auth",
      ]
      : []),
  ];
  let child: Deno.ChildProcess | undefined;
  const logFile = `${dir}/etcd.log`;
  const spawn = () => {
    const log = Deno.openSync(logFile, { append: true, create: true, write: true });
    const cmd = { args, stdin: "null" as const, stdout: "null" as const, stderr: "piped" as const };
    const c = opts.netns
      ? opts.netns.spawn(ETCD_BIN, cmd)
      : new Deno.Command(ETCD_BIN, cmd).spawn();
    c.stderr.pipeTo(log.writable).catch(() => {});
    return c;
  };
  let alive = false;
  const waitHealthy = async () => {
    const curl = [
      "-s",
      "--max-time",
      "1",
      ...(tls ? ["--cacert", tls.ca, "--cert", tls.clientCert, "--key", tls.clientKey] : []),
      `${clientUrl}/health`,
    ];
    for (let i = 0; i < 150; i++) {
      const r = await runCommand(opts.netns, "curl", { args: curl });
      if (r.stdout.includes('"health":"true"')) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(
      `etcd did not become healthy at ${clientUrl}:\n${
        Deno.readTextFileSync(logFile).slice(-2000)
      }`,
    );
  };
  const start = async () => {
    child = spawn();
    alive = true;
    child.status.then(() => (alive = false));
    await waitHealthy();
  };
  const halt = async (signal: Deno.Signal) => {
    if (!child || !alive) return;
    try {
      child.kill(signal);
    } catch {
      // exited
    }
    await child.status;
  };
  await start();
  const fixture: EtcdFixture = {
    endpoints: [clientUrl],
    dataDir,
    running: () => alive,
    kill: () => halt("SIGKILL"),
    stop: () => halt("SIGTERM"),
    restart: async () => {
      await halt("SIGTERM");
      await start();
    },
    pause: () => {
      if (!child) return;
      child.kill("SIGSTOP");
      waitStopped(child.pid);
    },
    resume: () => child?.kill("SIGCONT"),
    async [Symbol.asyncDispose]() {
      if (alive) child?.kill("SIGCONT");
      await halt("SIGKILL");
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
  if (tls) fixture.tls = tls;
  return fixture;
}

/** A loopback port that accepts connections and never says a word. */
export interface SilentEndpoint extends AsyncDisposable {
  /** `http://127.0.0.1:<port>` */
  endpoint: string;
  /** How many connections it has accepted. */
  accepted(): number;
}

export function silentEndpoint(): SilentEndpoint {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const c of l) conns.push(c);
  })().catch(() => {});
  return {
    endpoint: `http://127.0.0.1:${(l.addr as Deno.NetAddr).port}`,
    accepted: () => conns.length,
    async [Symbol.asyncDispose]() {
      l.close();
      await accepting;
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // closed by the peer
        }
      }
    },
  };
}

/**
 * Returns once every thread of `pid` is stopped. kill(SIGSTOP) returns before a thread
 * running on another CPU has stopped, and such a thread could still answer one request.
 */
function waitStopped(pid: number): void {
  const deadline = Date.now() + 2000;
  while (Date.now() < deadline) {
    let all = true;
    try {
      for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
        const stat = Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/stat`);
        const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
        if (state !== "T" && state !== "t") all = false;
      }
    } catch {
      return; // gone
    }
    if (all) return;
  }
  throw new Error(`etcd (pid ${pid}) did not stop within 2 s of SIGSTOP`);
}
