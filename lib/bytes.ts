/** Byte buffers: joining the pieces of a read loop, and reading all of a reader. */

/** The pieces, end to end, in one new array. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * All of a reader, decoded as UTF-8. Plain reads: the stream/Response path costs 4-8 ms
 * of start-up on every CNI call, more than reading the config itself.
 */
export function readAllSync(r: { readSync(p: Uint8Array): number | null }): string {
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(64 * 1024);
  for (;;) {
    const n = r.readSync(buf);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
  }
  return new TextDecoder().decode(concatBytes(chunks));
}
