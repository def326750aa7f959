/**
 * An rtnetlink socket bound to one network namespace.
 *
 * The socket is created inside the namespace (setns → socket → setns back, synchronously,
 * through {@link Netns.run}) and then used from the main thread: a netlink socket talks to
 * the namespace it was created in, whatever thread uses it. Requests are tiny and the
 * kernel answers them before `send` returns, so send and receive are synchronous calls;
 * SO_RCVTIMEO bounds a receive that would otherwise wait forever.
 *
 * Every change asks for an ACK; an NLMSG_ERROR with a negative errno becomes the typed
 * error `ip` would have produced (`IpExistsError`, `IpNotFoundError`, …), carrying the
 * errno and the kernel's extended-ACK text.
 * @module
 */

import {
  IpError,
  IpExistsError,
  IpInvalidError,
  IpNotFoundError,
  IpUnsupportedError,
  NetnsError,
  strerror,
} from "../errors.ts";
import {
  sysClose,
  sysNetlinkSocket,
  sysRecv,
  sysSend,
  sysSendAsync,
  sysSetsockopt,
} from "../ffi.ts";
import type { Netns } from "../netns.ts";
import {
  decodeError,
  decodeMessages,
  encodeMessage,
  type Message,
  NLM_F_ACK,
  NLM_F_DUMP,
  NLM_F_MULTI,
  NLM_F_REQUEST,
  NLMSG_DONE,
  NLMSG_ERROR,
  type Request,
} from "./codec.ts";

const SOL_SOCKET = 1;
const SO_SNDBUF = 7;
const SO_RCVBUF = 8;
const SO_RCVTIMEO = 20;
const SOL_NETLINK = 270;
const NETLINK_CAP_ACK = 10;
const NETLINK_EXT_ACK = 11;
const MSG_TRUNC = 0x20;
const EAGAIN = 11;
/** A dump the kernel marks as interrupted (the table changed under it) is read again. */
const NLM_F_DUMP_INTR = 0x10;

/** The kernel sizes dump datagrams from the largest receive buffer seen, at most ~32 KiB. */
const RECV_SIZE = 64 * 1024;

function int(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, v, true);
  return b;
}

/** The typed error for a kernel errno, as `ip` would have reported it. */
export function netlinkError(
  command: string,
  errno: number,
  message: string | undefined,
  netns?: string,
): IpError {
  let Cls: typeof IpError = IpError;
  switch (errno) {
    case 17: // EEXIST
      Cls = IpExistsError;
      break;
    case 2: // ENOENT
    case 3: // ESRCH: no such route / neighbour
    case 19: // ENODEV
    case 99: // EADDRNOTAVAIL: no such address
      Cls = IpNotFoundError;
      break;
    case 93: // EPROTONOSUPPORT
    case 95: // EOPNOTSUPP
    case 97: // EAFNOSUPPORT
      Cls = IpUnsupportedError;
      break;
    case 22: // EINVAL
    case 34: // ERANGE
    case 36: // ENAMETOOLONG
    case 100: // ENETDOWN: a route through a link that is down
    case 101: // ENETUNREACH: a gateway that is not on link
      Cls = IpInvalidError;
      break;
  }
  const text = `${message ? `${message}: ` : ""}${strerror(errno)} (errno ${errno})`;
  return new Cls(command, text, 2, netns, errno);
}

/** One rtnetlink socket in one namespace. Close it (or `using`) when done. */
export class NetlinkSocket implements Disposable {
  #fd: number | undefined;
  #seq: number;
  readonly #buf = new Uint8Array(RECV_SIZE);

  private constructor(fd: number, readonly netns: Netns | undefined) {
    this.#fd = fd;
    // Distinct starting points keep a stale answer from matching a new request.
    this.#seq = (Date.now() & 0xffff) << 8;
  }

  /**
   * Opens a socket in `netns` (default: the calling thread's namespace). The socket stays
   * in that namespace after the thread returns home.
   */
  static open(netns?: Netns, opts: { timeoutMs?: number } = {}): NetlinkSocket {
    const r = netns ? netns.run(sysNetlinkSocket) : sysNetlinkSocket();
    if (!r.ok) throw new NetnsError(`cannot open a netlink socket: ${strerror(r.errno)}`);
    const fd = r.value;
    try {
      const ms = opts.timeoutMs ?? 10_000;
      const tv = new Uint8Array(16);
      const dv = new DataView(tv.buffer);
      dv.setBigInt64(0, BigInt(Math.floor(ms / 1000)), true);
      dv.setBigInt64(8, BigInt((ms % 1000) * 1000), true);
      const opt = (level: number, name: number, value: Uint8Array) => {
        const o = sysSetsockopt(fd, level, name, value);
        if (!o.ok) {
          throw new NetnsError(`netlink setsockopt ${level}/${name}: ${strerror(o.errno)}`);
        }
      };
      opt(SOL_SOCKET, SO_RCVTIMEO, tv);
      opt(SOL_SOCKET, SO_SNDBUF, int(1 << 20));
      opt(SOL_SOCKET, SO_RCVBUF, int(1 << 20));
      // The kernel's reason in words ("Nexthop has invalid gateway"), and errors that do
      // not echo the whole request back.
      opt(SOL_NETLINK, NETLINK_EXT_ACK, int(1));
      opt(SOL_NETLINK, NETLINK_CAP_ACK, int(1));
    } catch (e) {
      sysClose(fd);
      throw e;
    }
    return new NetlinkSocket(fd, netns);
  }

  get closed(): boolean {
    return this.#fd === undefined;
  }

  #fdOrThrow(): number {
    if (this.#fd === undefined) throw new NetnsError("netlink socket is closed");
    return this.#fd;
  }

  /** The request as bytes, under a new sequence number. */
  #encode(req: Request, flags: number): { seq: number; msg: Uint8Array } {
    const seq = ++this.#seq >>> 0;
    return { seq, msg: encodeMessage({ ...req, flags: req.flags | flags }, seq) };
  }

  #send(req: Request, flags: number): number {
    const { seq, msg } = this.#encode(req, flags);
    const r = sysSend(this.#fdOrThrow(), msg);
    if (!r.ok) throw new NetnsError(`netlink send: ${strerror(r.errno)}`);
    return seq;
  }

  #recv(): Message[] {
    const r = sysRecv(this.#fdOrThrow(), this.#buf, MSG_TRUNC);
    if (!r.ok) {
      if (r.errno === EAGAIN) throw new NetnsError("netlink: the kernel did not answer in time");
      throw new NetnsError(`netlink recv: ${strerror(r.errno)}`);
    }
    if (r.value > this.#buf.length) {
      throw new NetnsError(`netlink: a ${r.value}-byte answer did not fit the receive buffer`);
    }
    // A copy: the buffer is reused by the next receive, and callers keep the messages.
    return decodeMessages(this.#buf.slice(0, r.value));
  }

  #fail(command: string, errno: number, message?: string): never {
    throw netlinkError(command, errno, message, this.netns?.path);
  }

  /**
   * Sends one request with NLM_F_ACK and waits for its ACK; returns the messages that came
   * before it (the answer of a GET). A kernel error throws the typed error; `command`
   * names the request in it (`link add veth0 type veth`).
   */
  request(req: Request, command: string): Message[] {
    return this.#untilAck(this.#send(req, NLM_F_REQUEST | NLM_F_ACK), command);
  }

  /** The messages answering request `seq` up to its ACK; a kernel error throws. */
  #untilAck(seq: number, command: string): Message[] {
    const out: Message[] = [];
    for (;;) {
      for (const m of this.#recv()) {
        if (m.seq !== seq) continue; // a late answer to an earlier request
        if (m.type === NLMSG_ERROR) {
          const e = decodeError(m);
          if (e.errno !== 0) this.#fail(command, e.errno, e.message);
          return out;
        }
        out.push(m);
      }
    }
  }

  /**
   * {@link request}, with the kernel's work (done inside send(2)) on another thread: for
   * requests that may take long (deleting a link), in a process that serves others
   * meanwhile (the node agent). Nothing else may use this socket until it settles.
   */
  async requestAsync(req: Request, command: string): Promise<Message[]> {
    const { seq, msg } = this.#encode(req, NLM_F_REQUEST | NLM_F_ACK);
    const r = await sysSendAsync(this.#fdOrThrow(), msg);
    if (!r.ok) throw new NetnsError(`netlink send: ${strerror(r.errno)}`);
    return this.#untilAck(seq, command);
  }

  /** Sends a dump request and returns every message up to NLMSG_DONE. */
  dump(req: Request, command: string): Message[] {
    for (let attempt = 0;; attempt++) {
      const seq = this.#send(req, NLM_F_REQUEST | NLM_F_DUMP);
      const out: Message[] = [];
      let interrupted = false;
      let done = false;
      while (!done) {
        for (const m of this.#recv()) {
          if (m.seq !== seq) continue;
          if (m.flags & NLM_F_DUMP_INTR) interrupted = true;
          if (m.type === NLMSG_DONE) {
            // The body is the dump's final status, a negative errno on failure.
            const status = m.body.length >= 4
              ? new DataView(m.body.buffer, m.body.byteOffset).getInt32(0, true)
              : 0;
            if (status < 0) this.#fail(command, -status);
            done = true;
            break;
          }
          if (m.type === NLMSG_ERROR) {
            const e = decodeError(m);
            if (e.errno !== 0) this.#fail(command, e.errno, e.message);
            continue;
          }
          out.push(m);
          if (!(m.flags & NLM_F_MULTI)) done = true;
        }
      }
      if (!interrupted || attempt >= 4) return out;
    }
  }

  close(): void {
    if (this.#fd !== undefined) sysClose(this.#fd);
    this.#fd = undefined;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
