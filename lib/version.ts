/** ohno's own version, from deno.json (so a release bumps one place). */
import meta from "../deno.json" with { type: "json" };

export const OHNO_VERSION: string = meta.version;
