/** The plugin's HTTP/1.1 over a unix socket: framing, real servers, failures, timeouts. */
import { assertEquals, assertRejects, assertThrows } from "../tests/support/assert.ts";
import { HttpProtocolError, parseResponse, unixRequest } from "./unixhttp.ts";

const enc = (s: string) => new TextEncoder().encode(s);

Deno.test("responses framed by content-length, chunks or the end of the stream", () => {
  const a = parseResponse(enc('HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n{"a":1}trailing'));
  assertEquals([a.status, a.body, a.headers.get("content-length")], [200, '{"a":1}', "7"]);
  const b = parseResponse(
    enc(
      "HTTP/1.1 507 Insufficient Storage\r\ntransfer-encoding: chunked\r\n\r\n" +
        '4\r\n{"e"\r\n6;x=y\r\n:"né"\r\n1\r\n}\r\n0\r\n\r\n',
    ),
  );
  assertEquals([b.status, b.body], [507, '{"e":"né"}']);
  const c = parseResponse(enc("HTTP/1.0 404\r\n\r\nno framing"));
  assertEquals([c.status, c.body], [404, "no framing"]);
  for (
    const bad of [
      "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n",
      "SSH-2.0-OpenSSH\r\n\r\n",
      "HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
      "HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nshort",
      "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    ]
  ) {
    assertThrows(() => parseResponse(enc(bad)), HttpProtocolError);
  }
});

/** Runs `fn` with a socket path in a temporary directory removed afterwards. */
async function inSocketDir(fn: (path: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ohnot-uh-" });
  try {
    await fn(`${dir}/s.sock`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A raw unix-socket server answering every connection with `answer` (or never). */
function rawServer(path: string, answer: string | null, keepOpen: boolean) {
  const listener = Deno.listen({ transport: "unix", path });
  const conns: Deno.Conn[] = [];
  const requests: string[] = [];
  const done = (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      const buf = new Uint8Array(4096);
      const n = await conn.read(buf);
      requests.push(new TextDecoder().decode(buf.subarray(0, n ?? 0)));
      if (answer !== null) await conn.write(enc(answer));
      if (!keepOpen) conn.close();
    }
  })();
  return {
    requests,
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await done.catch(() => {});
    },
  };
}

Deno.test("a request reaches a real server and its answer comes back", () =>
  inSocketDir(async (path) => {
    const ac = new AbortController();
    const server = Deno.serve({ path, signal: ac.signal, onListen() {} }, async (req) => {
      const body = await req.text();
      return Response.json({ method: req.method, url: new URL(req.url).pathname, body }, {
        status: 201,
      });
    });
    const res = await unixRequest(
      path,
      "POST",
      "/v1/allocate",
      '{"x":1}',
      AbortSignal.timeout(2000),
    );
    assertEquals(res.status, 201);
    assertEquals(JSON.parse(res.body), { method: "POST", url: "/v1/allocate", body: '{"x":1}' });
    ac.abort();
    await server.finished;
  }));

Deno.test("a server that keeps the connection open does not make the call wait", () =>
  inSocketDir(async (path) => {
    for (
      const answer of [
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
      ]
    ) {
      await using srv = rawServer(path, answer, true);
      // The server never closes: a call that waited for the close would be aborted by this
      // (generous) signal and reject instead of answering.
      const res = await unixRequest(
        path,
        "GET",
        "/v1/status",
        undefined,
        AbortSignal.timeout(30_000),
      );
      assertEquals([res.status, res.body], [200, "{}"]);
      assertEquals(srv.requests[0]?.startsWith("GET /v1/status HTTP/1.1\r\n"), true);
      assertEquals(srv.requests[0]?.includes("connection: close"), true);
    }
  }));

Deno.test("missing socket, refused connection, silent server, broken HTTP", () =>
  inSocketDir(async (path) => {
    await assertRejects(
      () => unixRequest(path, "GET", "/", undefined, AbortSignal.timeout(1000)),
      Deno.errors.NotFound,
    );
    // A socket file with nobody listening: its listener died (Deno's own close would
    // remove the file).
    const holder = new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `Deno.listen({ transport: "unix", path: ${
          JSON.stringify(path)
        } }); console.log("up"); setTimeout(() => {}, 60000)`,
      ],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = holder.stdout.getReader();
    await reader.read(); // "up"
    reader.releaseLock();
    holder.kill("SIGKILL");
    await holder.status;
    await holder.stdout.cancel();
    await assertRejects(
      () => unixRequest(path, "GET", "/", undefined, AbortSignal.timeout(1000)),
      Deno.errors.ConnectionRefused,
    );
    await Deno.remove(path);
    {
      await using _srv = rawServer(path, null, true);
      // The server never answers: the call gives up when its signal fires (a call that
      // ignored the signal would never settle, and lose the race against the deadline).
      const signal = AbortSignal.timeout(300);
      let deadline: ReturnType<typeof setTimeout> | undefined;
      const hung = new Promise<never>((_, reject) => {
        deadline = setTimeout(() => reject(new Error("ignored its abort signal")), 30_000);
      });
      try {
        await assertRejects(
          () => Promise.race([unixRequest(path, "GET", "/", undefined, signal), hung]),
          DOMException,
        );
      } finally {
        clearTimeout(deadline);
      }
    }
    {
      await using _srv = rawServer(path, "garbage\r\n\r\n", false);
      await assertRejects(
        () => unixRequest(path, "GET", "/", undefined, AbortSignal.timeout(1000)),
        HttpProtocolError,
      );
    }
  }));
