/** Statistics and printing shared by ohno's benchmarks. */

/** The q-quantile (0..1) of samples by nearest rank. */
export function quantile(samples: number[], q: number): number {
  if (samples.length === 0) return NaN;
  const s = [...samples].sort((a, b) => a - b);
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1));
  return s[i]!;
}

export interface Summary {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  mean: number;
}

export function summarize(samples: number[]): Summary {
  return {
    n: samples.length,
    p50: quantile(samples, 0.5),
    p90: quantile(samples, 0.9),
    p99: quantile(samples, 0.99),
    mean: samples.reduce((a, b) => a + b, 0) / Math.max(1, samples.length),
  };
}

/** Milliseconds with a sensible precision. */
export function ms(x: number): string {
  return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
}

export function ratio(a: number, b: number): string {
  return b > 0 ? `${(a / b).toFixed(2)}x` : "n/a";
}

/** Prints an aligned table (benchmarks print to stdout; that is their output). */
export function printTable(title: string, header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join("  ").trimEnd();
  // deno-lint-ignore no-console
  console.log([`\n## ${title}`, line(header), ...rows.map(line)].join("\n"));
}

export function note(text: string): void {
  // deno-lint-ignore no-console
  console.log(text);
}

/** Times an async function once, in milliseconds. */
export async function timeIt(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

/**
 * Calls `fn` with each line a process prints (an `ip monitor`, say) and the time it was
 * read (`Date.now()`), until its output ends.
 */
export async function eachLine(
  p: Deno.ChildProcess,
  fn: (line: string, at: number) => void,
): Promise<void> {
  const reader = p.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    const at = Date.now();
    buf += value;
    const lines = buf.split("\n");
    buf = lines.pop()!;
    for (const l of lines) fn(l, at);
  }
}

/** Ends the watchers (`ip monitor`, say) with SIGTERM and waits for them all. */
export async function stopAll(procs: Deno.ChildProcess[]): Promise<void> {
  for (const p of procs) {
    try {
      p.kill("SIGTERM");
    } catch {
      // gone
    }
  }
  await Promise.all(procs.map((p) => p.status));
}

/**
 * The median of `xs` and a 95% interval for it by the percentile bootstrap (`resamples`
 * resamples with replacement, from a seeded generator so a run's figures repeat).
 */
export function bootstrapMedian(
  xs: number[],
  resamples = 4000,
  seed = 12345,
): { median: number; lo: number; hi: number } {
  const median = quantile(xs, 0.5);
  if (xs.length < 2) return { median, lo: median, hi: median };
  let s = seed >>> 0;
  const rand = () => {
    // mulberry32
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const meds: number[] = [];
  const sample = new Array<number>(xs.length);
  for (let r = 0; r < resamples; r++) {
    for (let i = 0; i < xs.length; i++) sample[i] = xs[Math.floor(rand() * xs.length)]!;
    meds.push(quantile(sample, 0.5));
  }
  meds.sort((a, b) => a - b);
  return {
    median,
    lo: meds[Math.floor(0.025 * (resamples - 1))]!,
    hi: meds[Math.ceil(0.975 * (resamples - 1))]!,
  };
}
