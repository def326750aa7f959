/**
 * The verb a CNI call names (`CNI_COMMAND`), on its own: runCni decides with it whether
 * the node agent does the call before it loads anything else (env.ts re-exports it).
 * @module
 */

import { CniCode, CniError } from "./errors.ts";

export type Verb = "ADD" | "DEL" | "CHECK" | "GC" | "STATUS" | "VERSION";
const VERBS: readonly Verb[] = ["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION"];

/** Parses the verb from `CNI_COMMAND`: error 4 naming the variable otherwise. */
export function parseVerb(raw: Record<string, string>): Verb {
  const c = raw.CNI_COMMAND;
  if (c === undefined || c === "") {
    throw new CniError(CniCode.InvalidEnvironment, "CNI_COMMAND is not set");
  }
  if (!(VERBS as readonly string[]).includes(c)) {
    throw new CniError(
      CniCode.InvalidEnvironment,
      `CNI_COMMAND ${JSON.stringify(c)} is not one of ${VERBS.join(", ")}`,
    );
  }
  return c as Verb;
}
