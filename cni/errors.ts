/**
 * CNI errors: a code from the spec (or ohno's own, 100+) with a short message and
 * details. Thrown anywhere below cni/, turned into the one JSON document on stdout by
 * the CNI entry.
 * @module
 */

import { namedError } from "../lib/errors.ts";

/** Error codes. 1–11 and 50–51 are the spec's; 100+ are ohno's own (docs/cni.md). */
export const CniCode = {
  IncompatibleVersion: 1,
  UnsupportedField: 2,
  UnknownContainer: 3,
  InvalidEnvironment: 4,
  IoFailure: 5,
  DecodeFailure: 6,
  InvalidConfig: 7,
  TryAgainLater: 11,
  NotAvailable: 50,
  LimitedConnectivity: 51,
  /** ohno: no free address in the range or pool (the message names it). */
  AddressesExhausted: 100,
  /** ohno: ADD for a container ID + ifname that already holds addresses. */
  AttachmentExists: 101,
  /** ohno: a requested static address is in use, reserved, or outside every range. */
  AddressUnavailable: 102,
  /** ohno: CHECK found the attachment different from prevResult (the message says how). */
  CheckFailed: 103,
  /** An unexpected failure inside ohno (a bug): details carry the stack. */
  Internal: 999,
} as const;
export type CniCodeValue = typeof CniCode[keyof typeof CniCode] | number;

export class CniError extends namedError("CniError") {
  constructor(
    readonly code: CniCodeValue,
    message: string,
    readonly details?: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }

  /** The spec's error object for version `cniVersion`. */
  toJSON(cniVersion: string): Record<string, unknown> {
    const o: Record<string, unknown> = { cniVersion, code: this.code, msg: this.message };
    if (this.details) o.details = this.details;
    return o;
  }
}

/** Parses JSON from stdin; text that is not JSON is a decode failure (6) with `message`. */
export function decodeJson(stdin: string, message: string): unknown {
  try {
    return JSON.parse(stdin);
  } catch (e) {
    throw new CniError(CniCode.DecodeFailure, message, (e as Error).message);
  }
}
