/**
 * One place that turns whatever went wrong below cni/ into a CniError with the right
 * code (docs/cni.md lists them).
 * @module
 */

import { AgentError, AgentUnavailableError } from "../ipam/client.ts";
import {
  AddressUnavailableError,
  HandleExistsError,
  IpamConfigError,
  IpamExhaustedError,
} from "../ipam/errors.ts";
import { StoreBusyError, StoreConflictError, StoreUnavailableError } from "../ipam/store.ts";
import { IpError, NetnsError, NetnsNotFoundError } from "../netns/errors.ts";
import { CniCode, CniError } from "./errors.ts";

export function toCniError(e: unknown): CniError {
  if (e instanceof CniError) return e;
  if (e instanceof IpamExhaustedError) return new CniError(CniCode.AddressesExhausted, e.message);
  if (e instanceof HandleExistsError) return new CniError(CniCode.AttachmentExists, e.message);
  if (e instanceof AddressUnavailableError) {
    return new CniError(CniCode.AddressUnavailable, e.message);
  }
  if (e instanceof IpamConfigError) {
    return new CniError(CniCode.InvalidConfig, `invalid network config: ${e.message}`);
  }
  if (e instanceof AgentUnavailableError) return new CniError(CniCode.TryAgainLater, e.message);
  if (e instanceof AgentError) {
    const code = {
      invalid: CniCode.InvalidConfig,
      exists: CniCode.AttachmentExists,
      unavailable: CniCode.AddressUnavailable,
      exhausted: CniCode.AddressesExhausted,
      "not-ready": CniCode.TryAgainLater,
      "not-found": CniCode.CheckFailed,
      elsewhere: CniCode.Internal,
      internal: CniCode.Internal,
    }[e.kind] ?? CniCode.Internal;
    return new CniError(code, `node agent: ${e.message}`);
  }
  if (e instanceof StoreConflictError) return new CniError(CniCode.TryAgainLater, e.message);
  if (e instanceof StoreBusyError) return new CniError(CniCode.TryAgainLater, e.message);
  if (e instanceof StoreUnavailableError) return new CniError(CniCode.IoFailure, e.message);
  if (e instanceof NetnsNotFoundError) {
    return new CniError(
      CniCode.InvalidEnvironment,
      `CNI_NETNS ${JSON.stringify(e.path)} is not a network namespace that exists`,
    );
  }
  if (e instanceof IpError) {
    return new CniError(CniCode.Internal, e.message, e.stderr.trim() || undefined);
  }
  if (e instanceof NetnsError) return new CniError(CniCode.Internal, e.message);
  const err = e as Error;
  return new CniError(
    CniCode.Internal,
    `internal error: ${err?.message ?? String(e)}`,
    err?.stack,
  );
}
