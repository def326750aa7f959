/** Output helpers for CLI commands: aligned tables for people, JSON for scripts. */

const encoder = new TextEncoder();

/** Writes text to stdout completely. */
export function print(text: string): void {
  let bytes = encoder.encode(text.endsWith("\n") ? text : text + "\n");
  while (bytes.length > 0) bytes = bytes.subarray(Deno.stdout.writeSync(bytes));
}

/** Prints a value as indented JSON. */
export function printJson(value: unknown): void {
  print(JSON.stringify(value, null, 2));
}

/** Formats rows as a left-aligned table with a header row. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)).join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

/** Validates an `-o` value against the allowed formats. */
export function outputFormat<T extends string>(value: string, allowed: readonly T[]): T {
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw new TypeError(`unknown output format ${JSON.stringify(value)} (use ${allowed.join(", ")})`);
}
