/**
 * Typed errors of the namespace driver and its ip and nft drivers. Callers branch on
 * `instanceof`.
 * @module
 */

import { namedError } from "../lib/errors.ts";

/** Base class: anything the namespace driver reports. */
export class NetnsError extends namedError("NetnsError") {}

/** The namespace path does not exist (or is not a namespace file). */
export class NetnsNotFoundError extends namedError("NetnsNotFoundError", NetnsError) {
  constructor(readonly path: string, options?: ErrorOptions) {
    super(`network namespace ${path} does not exist`, options);
  }
}

/** open(2) or setns(2) refused: not permitted, not a net namespace, … */
export class NetnsEnterError extends namedError("NetnsEnterError", NetnsError) {
  constructor(
    readonly path: string,
    readonly errno: number,
    what: string,
    options?: ErrorOptions,
  ) {
    super(`cannot ${what} network namespace ${path}: ${strerror(errno)} (errno ${errno})`, options);
  }
}

/** Something went wrong running `ip`; carries the command and ip's stderr. */
export class IpError extends namedError("IpError", NetnsError) {
  constructor(
    readonly command: string,
    readonly stderr: string,
    readonly exitCode: number,
    readonly netns?: string,
    /** The kernel's errno when the failure came over netlink rather than from an ip process. */
    readonly errno?: number,
  ) {
    super(
      `ip ${command} failed${netns ? ` in ${netns}` : ""}: ${stderr.trim() || `exit ${exitCode}`}`,
    );
  }
}

/** The object to create already exists ("File exists"). */
export class IpExistsError extends namedError("IpExistsError", IpError) {}

/** The device, address, route or namespace does not exist. */
export class IpNotFoundError extends namedError("IpNotFoundError", IpError) {}

/** The kernel or ip rejected the arguments (bad name, bad prefix, unsupported kind). */
export class IpInvalidError extends namedError("IpInvalidError", IpError) {}

/** The kernel lacks the feature (e.g. an ipip or wireguard link in this kernel). */
export class IpUnsupportedError extends namedError("IpUnsupportedError", IpError) {}

/** Something went wrong running `nft`; says what it was doing and carries nft's stderr. */
export class NftError extends namedError("NftError", NetnsError) {
  constructor(
    readonly what: string,
    readonly stderr: string,
    readonly exitCode: number,
    readonly netns?: string,
  ) {
    super(
      `nft could not ${what}${netns ? ` in ${netns}` : ""}: ${stderr.trim() || `exit ${exitCode}`}`,
    );
  }
}

/** Picks the error class for ip's stderr. */
export function ipErrorFor(
  command: string,
  stderr: string,
  exitCode: number,
  netns?: string,
): IpError {
  const s = stderr.toLowerCase();
  let Cls: typeof IpError = IpError;
  if (/file exists|already exists|address already assigned/.test(s)) Cls = IpExistsError;
  else if (
    /cannot find device|no such device|does not exist|no such process|no such file|cannot find|not found|object "[^"]*" is unknown/
      .test(s)
  ) Cls = IpNotFoundError;
  else if (/unknown device type|operation not supported|not supported/.test(s)) {
    Cls = IpUnsupportedError;
  } else if (
    /invalid|error: |not a valid|too long|out of range|numerical result|nexthop has invalid/.test(s)
  ) {
    Cls = IpInvalidError;
  }
  return new Cls(command, stderr, exitCode, netns);
}

const ERRNO: Record<number, string> = {
  1: "operation not permitted",
  2: "no such file or directory",
  3: "no such process",
  9: "bad file descriptor",
  11: "resource temporarily unavailable",
  12: "cannot allocate memory",
  13: "permission denied",
  16: "device or resource busy",
  17: "file exists",
  19: "no such device",
  20: "not a directory",
  22: "invalid argument",
  24: "too many open files",
  34: "numerical result out of range",
  36: "file name too long",
  93: "protocol not supported",
  95: "operation not supported",
  97: "address family not supported by protocol",
  99: "cannot assign requested address",
  100: "network is down",
  101: "network is unreachable",
  113: "no route to host",
};

export function strerror(errno: number): string {
  return ERRNO[errno] ?? `errno ${errno}`;
}
