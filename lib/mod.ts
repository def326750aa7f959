/**
 * lib/: small helpers every part of ohno shares: logging, the invoked name, the version,
 * sleeping, joining bytes, whether a process runs, and `namedError` (errors.ts), the one
 * way ohno declares an error class.
 *
 * This entry re-exports nothing: code imports the file that defines a name (one way for
 * every folder; daemon/k8s/mod.ts is the one exception, the chunk the agent loads lazily).
 *
 * Imports: nothing of ohno's (the innermost folder).
 * @module
 */
