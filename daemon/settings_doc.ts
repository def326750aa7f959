/**
 * docs/daemon.md's table of settings, rendered from daemon/settings.ts.
 * daemon/settings_test.ts checks the doc against it; to rewrite the table in the doc:
 *
 * ```sh
 * ./dev deno run -A daemon/settings_doc.ts && ./dev deno fmt docs/daemon.md
 * ```
 * @module
 */

import { CONFIG_SETTING, defaultText, SETTINGS, type SettingSpec } from "./settings.ts";

export const DOC_FILE = new URL("../docs/daemon.md", import.meta.url);
export const BEGIN =
  "<!-- settings: generated from daemon/settings.ts (daemon/settings_doc.ts) -->";
export const END = "<!-- /settings -->";

const HEADER = ["key", "flag", "environment", "default", "meaning"];

/** A cell: pipes escaped, as a markdown table needs. */
const cell = (s: string) => s.replaceAll("|", "\\|");
const code = (s: string) => cell(`\`${s}\``);

/** The table's rows, header first. */
export function settingsRows(): string[][] {
  const row = (s: Omit<SettingSpec, "key" | "parse"> & { key?: string }) => {
    const dflt = defaultText(s);
    return [
      s.key ? code(s.key) : "–",
      s.flag ? code(s.flag) : "",
      s.env ? code(s.env) : "",
      dflt !== undefined ? code(dflt) : cell(s.defaultDoc ?? "–"),
      cell(s.doc),
    ];
  };
  return [HEADER, row(CONFIG_SETTING), ...SETTINGS.map(row)];
}

/** Where the table goes in `doc`: after BEGIN, up to END. */
function section(doc: string): [start: number, end: number] {
  const start = doc.indexOf(BEGIN);
  const end = doc.indexOf(END, start);
  if (start < 0 || end < 0) throw new Error(`the markers ${BEGIN} … ${END} are missing`);
  return [start + BEGIN.length, end];
}

/** The rows of the table between the markers in `doc`, cells trimmed (header first). */
export function docRows(doc: string): string[][] {
  return doc.slice(...section(doc)).split("\n")
    .filter((l) => l.startsWith("|") && !/^\|[\s|:-]+\|$/.test(l))
    .map((l) => l.slice(1, -1).split(/(?<!\\)\|/).map((c) => c.trim()));
}

/** The markdown table, columns aligned. */
export function renderTable(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(3, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  return [line(rows[0]!), line(widths.map((w) => "-".repeat(w))), ...rows.slice(1).map(line)]
    .join("\n");
}

if (import.meta.main) {
  const doc = await Deno.readTextFile(DOC_FILE);
  const [start, end] = section(doc);
  const table = renderTable(settingsRows());
  await Deno.writeTextFile(DOC_FILE, `${doc.slice(0, start)}\n\n${table}\n\n${doc.slice(end)}`);
}
