/**
 * One HTTP/1.1 request over a unix socket, on a plain `Deno.connect`: the plugin's only
 * transport to the node agent. `fetch` with a unix-socket client does the same job but
 * costs about 8 ms more in a fresh process (it starts Deno's whole HTTP client), and the
 * plugin is a fresh process on every CNI call.
 *
 * Deliberately small: one request per connection (`connection: close`), a JSON body,
 * a response framed by content-length, chunked encoding or the end of the stream.
 * @module
 */

import { concatBytes } from "../lib/bytes.ts";

export interface UnixResponse {
  status: number;
  headers: Map<string, string>;
  body: string;
}

/** The response could not be parsed as HTTP/1.1. */
export class HttpProtocolError extends Error {
  override name = "HttpProtocolError";
}

const encoder = new TextEncoder();

/**
 * Sends `method path` with an optional JSON body and reads the whole response. The
 * signal aborts both the connect and the exchange (the connection is closed).
 */
export async function unixRequest(
  socket: string,
  method: string,
  path: string,
  body: string | undefined,
  signal: AbortSignal,
): Promise<UnixResponse> {
  signal.throwIfAborted();
  const conn = await withAbort(
    Deno.connect({ transport: "unix", path: socket }),
    signal,
    (c) => c.close(),
  );
  const onAbort = () => {
    try {
      conn.close();
    } catch { /* already closed */ }
  };
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    const payload = body === undefined ? new Uint8Array(0) : encoder.encode(body);
    const head = `${method} ${path} HTTP/1.1\r\nhost: ohno-agent\r\nconnection: close\r\n` +
      (body === undefined
        ? ""
        : `content-type: application/json\r\ncontent-length: ${payload.length}\r\n`) +
      "\r\n";
    await writeAll(conn, concatBytes([encoder.encode(head), payload]));
    return await readResponse(conn);
  } catch (e) {
    if (signal.aborted) throw signal.reason;
    throw e;
  } finally {
    signal.removeEventListener("abort", onAbort);
    onAbort();
  }
}

/** Parses a complete HTTP/1.1 response. Exported for tests. */
export function parseResponse(raw: Uint8Array): UnixResponse {
  const end = indexOfCrlfCrlf(raw);
  if (end < 0) throw new HttpProtocolError("the response ended inside its header");
  const headText = new TextDecoder().decode(raw.subarray(0, end));
  const [statusLine = "", ...lines] = headText.split("\r\n");
  const m = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(statusLine);
  if (!m) throw new HttpProtocolError(`not an HTTP/1.1 status line: ${statusLine.slice(0, 80)}`);
  const headers = new Map<string, string>();
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (colon <= 0) throw new HttpProtocolError(`bad header line: ${line.slice(0, 80)}`);
    headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  let rest = raw.subarray(end + 4);
  if (/\bchunked\b/i.test(headers.get("transfer-encoding") ?? "")) {
    rest = dechunk(rest);
  } else if (headers.has("content-length")) {
    const len = Number(headers.get("content-length"));
    if (!Number.isSafeInteger(len) || len < 0 || len > rest.length) {
      throw new HttpProtocolError(
        `content-length ${headers.get("content-length")} but ${rest.length} bytes of body`,
      );
    }
    rest = rest.subarray(0, len);
  }
  return { status: Number(m[1]), headers, body: new TextDecoder().decode(rest) };
}

function dechunk(data: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  let at = 0;
  for (;;) {
    const eol = indexOf(data, [13, 10], at);
    if (eol < 0) throw new HttpProtocolError("a chunk size line is cut short");
    const sizeText = new TextDecoder().decode(data.subarray(at, eol)).split(";")[0]!.trim();
    if (!/^[0-9a-fA-F]+$/.test(sizeText)) {
      throw new HttpProtocolError(`bad chunk size ${sizeText.slice(0, 20)}`);
    }
    const size = parseInt(sizeText, 16);
    if (size === 0) return concatBytes(parts);
    const start = eol + 2;
    if (start + size + 2 > data.length) throw new HttpProtocolError("a chunk is cut short");
    parts.push(data.subarray(start, start + size));
    at = start + size + 2;
  }
}

function indexOfCrlfCrlf(data: Uint8Array): number {
  return indexOf(data, [13, 10, 13, 10], 0);
}

function indexOf(data: Uint8Array, needle: number[], from: number): number {
  outer: for (let i = from; i + needle.length <= data.length; i++) {
    for (let j = 0; j < needle.length; j++) {
      if (data[i + j] !== needle[j]) continue outer;
    }
    return i;
  }
  return -1;
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let at = 0;
  while (at < data.length) at += await conn.write(data.subarray(at));
}

/**
 * Reads until the response is complete (by its framing) or the peer closes: a server
 * that ignores `connection: close` does not make the call wait for the timeout.
 */
async function readResponse(conn: Deno.Conn): Promise<UnixResponse> {
  const buf = new Uint8Array(16 * 1024);
  let data: Uint8Array = new Uint8Array(0);
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) return parseResponse(data);
    data = concatBytes([data, buf.subarray(0, n)]);
    const done = completeResponse(data);
    if (done) return done;
  }
}

/** The parsed response when `data` already holds all of it by its framing. */
function completeResponse(data: Uint8Array): UnixResponse | undefined {
  const end = indexOfCrlfCrlf(data);
  if (end < 0) return undefined;
  const head = new TextDecoder().decode(data.subarray(0, end)).toLowerCase();
  const framed = /\r\ncontent-length:/.test(head) || /\r\ntransfer-encoding:.*chunked/.test(head);
  if (!framed) return undefined; // framed by the end of the stream
  try {
    return parseResponse(data);
  } catch (e) {
    if (e instanceof HttpProtocolError && /cut short|but \d+ bytes/.test(e.message)) {
      return undefined; // not all here yet
    }
    throw e;
  }
}

/** Races a promise against the signal; a value that arrives too late is disposed of. */
function withAbort<T>(p: Promise<T>, signal: AbortSignal, late: (v: T) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        if (signal.aborted) {
          try {
            late(v);
          } catch { /* ignore */ }
        } else resolve(v);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}
