/**
 * IPAM errors. Callers catch these by class; the CNI face maps them to error codes
 * (docs/cni.md), the node agent to socket-protocol error kinds (docs/ipam-socket.md).
 * @module
 */

import { namedError } from "../lib/errors.ts";

export class IpamError extends namedError("IpamError") {}

/** No free address (or block) is left; the message names the range or pool. */
export class IpamExhaustedError extends namedError("IpamExhaustedError", IpamError) {}

/** The attachment (container ID + ifname) already holds addresses. */
export class HandleExistsError extends namedError("HandleExistsError", IpamError) {
  constructor(readonly containerID: string, readonly ifname: string, readonly ips: string[]) {
    super(
      `container ${containerID} interface ${ifname} already has addresses ${ips.join(", ")}`,
    );
  }
}

/** A requested (static) address cannot be given: outside every range, reserved, or in use. */
export class AddressUnavailableError extends namedError("AddressUnavailableError", IpamError) {}

/** The IPAM configuration itself is wrong (bad range, overlapping sets); names the field. */
export class IpamConfigError extends namedError("IpamConfigError", IpamError) {
  constructor(readonly field: string, message: string) {
    super(`${field}: ${message}`);
  }
}
