/**
 * lib/: small helpers every part of ohno shares: logging, the invoked name, the version,
 * sleeping, joining bytes, whether a process runs.
 *
 * Imports: nothing of ohno's (the innermost folder).
 * @module
 */
export * from "./log.ts";
export * from "./argv0.ts";
export * from "./version.ts";
export * from "./async.ts";
export * from "./bytes.ts";
export * from "./proc.ts";
