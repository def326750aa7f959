/**
 * Levelled, timestamped logging for every part of ohno.
 *
 * A line looks like
 * `2026-11-22T10:00:00.123Z INFO  [ADD 0123abcd eth0] veth created host=veth1a2b3c4d`.
 *
 * Sinks are chosen by the caller: CNI mode writes only to a file (stdout belongs to the
 * one JSON result), the daemon writes to stdout and a file. Writes are synchronous
 * appends of whole lines, so lines of concurrent plugin processes never interleave, and a
 * log file that cannot be written never breaks the caller.
 *
 * @example
 * ```ts
 * import { Logger } from "./log.ts";
 * const log = new Logger({ level: "debug", stderr: false });
 * log.child({ cmd: "ADD" }).info("bridge ready", { bridge: "ohno0" });
 * ```
 * @module
 */

export type Level = "debug" | "info" | "warn" | "error";

const RANK: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Parses a level name; unknown names fall back to `fallback`. */
export function parseLevel(s: string | undefined, fallback: Level = "info"): Level {
  const v = s?.trim().toLowerCase();
  return v === "debug" || v === "info" || v === "warn" || v === "error" ? v : fallback;
}

export interface LoggerOptions {
  /** Lowest level written. Default `info`. */
  level?: Level;
  /** Append to this file (its directory is created). */
  file?: string;
  /** Also write to stdout (the daemon) — never in CNI mode. */
  stdout?: boolean;
  /** Also write to stderr (CLI). */
  stderr?: boolean;
  /** A prefix shown in brackets on every line, e.g. `ADD 0123abcd eth0`. */
  context?: string;
}

type Fields = Record<string, unknown>;

const encoder = new TextEncoder();

/** A logger; cheap to create, `child()` adds context. */
export class Logger {
  #opts: LoggerOptions;
  #fileBroken = false;
  #dirMade = false;

  constructor(opts: LoggerOptions = {}) {
    this.#opts = { ...opts };
  }

  get level(): Level {
    return this.#opts.level ?? "info";
  }

  get file(): string | undefined {
    return this.#opts.file;
  }

  /** Changes sinks or level in place (CNI mode learns `logFile` only after parsing stdin). */
  configure(opts: Partial<LoggerOptions>): void {
    Object.assign(this.#opts, opts);
    this.#fileBroken = false;
    this.#dirMade = false;
  }

  /** A logger writing to the same sinks with more context. */
  child(context: string): Logger {
    const c = this.#opts.context ? `${this.#opts.context} ${context}` : context;
    const l = new Logger({ ...this.#opts, context: c });
    return l;
  }

  enabled(level: Level): boolean {
    return RANK[level] >= RANK[this.level];
  }

  debug(msg: string, fields?: Fields): void {
    this.#write("debug", msg, fields);
  }
  info(msg: string, fields?: Fields): void {
    this.#write("info", msg, fields);
  }
  warn(msg: string, fields?: Fields): void {
    this.#write("warn", msg, fields);
  }
  error(msg: string, fields?: Fields): void {
    this.#write("error", msg, fields);
  }

  #write(level: Level, msg: string, fields?: Fields): void {
    if (!this.enabled(level)) return;
    const line = formatLine(new Date(), level, this.#opts.context, msg, fields);
    const bytes = encoder.encode(line);
    if (this.#opts.file && !this.#fileBroken) {
      try {
        if (!this.#dirMade) {
          const dir = this.#opts.file.replace(/\/[^/]*$/, "");
          if (dir && dir !== this.#opts.file) Deno.mkdirSync(dir, { recursive: true });
          this.#dirMade = true;
        }
        Deno.writeFileSync(this.#opts.file, bytes, { append: true, create: true });
      } catch {
        // A log that cannot be written must never fail the operation being logged.
        this.#fileBroken = true;
      }
    }
    try {
      if (this.#opts.stdout) Deno.stdout.writeSync(bytes);
      if (this.#opts.stderr) Deno.stderr.writeSync(bytes);
    } catch {
      // stdout/stderr closed: nothing sensible to do.
    }
  }
}

/** Formats one log line (exported for tests). */
export function formatLine(
  at: Date,
  level: Level,
  context: string | undefined,
  msg: string,
  fields?: Fields,
): string {
  let s = `${at.toISOString()} ${level.toUpperCase().padEnd(5)}`;
  if (context) s += ` [${context}]`;
  s += ` ${msg}`;
  if (fields) {
    for (const [k, v] of Object.entries(fields)) {
      if (v === undefined) continue;
      s += ` ${k}=${formatValue(v)}`;
    }
  }
  return s.replaceAll("\n", "\\n") + "\n";
}

function formatValue(v: unknown): string {
  if (v instanceof Error) return JSON.stringify(v.message);
  if (typeof v === "string") return /^[\w.:/@+-]+$/.test(v) ? v : JSON.stringify(v);
  if (typeof v === "number" || typeof v === "boolean" || typeof v === "bigint") return String(v);
  try {
    return JSON.stringify(v);
  } catch {
    return String(v);
  }
}
