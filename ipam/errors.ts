/**
 * IPAM errors. Callers catch these by class; the CNI face maps them to error codes
 * (docs/cni.md), the node agent to socket-protocol error kinds (docs/ipam-socket.md).
 * @module
 */

export class IpamError extends Error {
  override name = "IpamError";
}

/** No free address (or block) is left; the message names the range or pool. */
export class IpamExhaustedError extends IpamError {
  override name = "IpamExhaustedError";
}

/** The attachment (container ID + ifname) already holds addresses. */
export class HandleExistsError extends IpamError {
  override name = "HandleExistsError";
  constructor(readonly containerID: string, readonly ifname: string, readonly ips: string[]) {
    super(
      `container ${containerID} interface ${ifname} already has addresses ${ips.join(", ")}`,
    );
  }
}

/** A requested (static) address cannot be given: outside every range, reserved, or in use. */
export class AddressUnavailableError extends IpamError {
  override name = "AddressUnavailableError";
}

/** The IPAM configuration itself is wrong (bad range, overlapping sets); names the field. */
export class IpamConfigError extends IpamError {
  override name = "IpamConfigError";
  constructor(readonly field: string, message: string) {
    super(`${field}: ${message}`);
  }
}
