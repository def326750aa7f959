/** Typed errors of the namespace driver (and its ip and nft drivers). Callers branch on `instanceof`. */

/** Base class: anything the namespace driver reports. */
export class NetnsError extends Error {
  override name = "NetnsError";
}

/** The namespace path does not exist (or is not a namespace file). */
export class NetnsNotFoundError extends NetnsError {
  override name = "NetnsNotFoundError";
  constructor(readonly path: string, options?: ErrorOptions) {
    super(`network namespace ${path} does not exist`, options);
  }
}

/** open(2) or setns(2) refused: not permitted, not a net namespace, … */
export class NetnsEnterError extends NetnsError {
  override name = "NetnsEnterError";
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
export class IpError extends NetnsError {
  override name = "IpError";
  constructor(
    readonly command: string,
    readonly stderr: string,
    readonly exitCode: number,
    readonly netns?: string,
  ) {
    super(
      `ip ${command} failed${netns ? ` in ${netns}` : ""}: ${stderr.trim() || `exit ${exitCode}`}`,
    );
  }
}

/** The object to create already exists ("File exists"). */
export class IpExistsError extends IpError {
  override name = "IpExistsError";
}

/** The device, address, route or namespace does not exist. */
export class IpNotFoundError extends IpError {
  override name = "IpNotFoundError";
}

/** The kernel or ip rejected the arguments (bad name, bad prefix, unsupported kind). */
export class IpInvalidError extends IpError {
  override name = "IpInvalidError";
}

/** The kernel lacks the feature (e.g. an ipip or wireguard link in this kernel). */
export class IpUnsupportedError extends IpError {
  override name = "IpUnsupportedError";
}

/** Something went wrong running `nft`; says what it was doing and carries nft's stderr. */
export class NftError extends NetnsError {
  override name = "NftError";
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
  9: "bad file descriptor",
  13: "permission denied",
  20: "not a directory",
  22: "invalid argument",
  24: "too many open files",
};

function strerror(errno: number): string {
  return ERRNO[errno] ?? `errno ${errno}`;
}
