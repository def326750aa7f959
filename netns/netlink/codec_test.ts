/**
 * The codec, table-tested without a kernel: requests encode to the bytes iproute2 sends for
 * the same command (captured with `strace -e sendmsg ip …` on iproute2 6.1, sequence number
 * aside), and messages the kernel sent decode to what `ip` printed for them.
 */
import { assert, assertEquals } from "../../tests/support/assert.ts";
import { addrAddRequest, addrDelRequest, decodeAddr } from "./addr.ts";
import {
  decodeError,
  decodeMessages,
  encodeMessage,
  formatIpBytes,
  ipBytes,
  macBytes,
  NLM_F_ACK,
  NLM_F_REQUEST,
  parsePrefix,
  type Request,
} from "./codec.ts";
import { decodeLink, linkAddRequest, linkDelRequest, linkSetRequest } from "./link.ts";
import {
  decodeNeigh,
  fdbAddRequest,
  fdbDelRequest,
  neighDelRequest,
  neighReplaceRequest,
} from "./neigh.ts";
import { decodeRoute, routeDelRequest, routeReplaceRequest } from "./route.ts";
import { IpExistsError, IpInvalidError, IpNotFoundError, IpUnsupportedError } from "../errors.ts";
import { netlinkError } from "./socket.ts";

const hex = (s: string) => Uint8Array.from(s.trim().split(/\s+/).map((x) => parseInt(x, 16)));
const toHex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(" ");
/** Link names in these captures: br0 is 2, the veth d0 is 4, the vxlan vx0 is 7. */
const resolve = (l: string | number) =>
  typeof l === "number" ? l : ({ br0: 2, d0: 4, vx0: 7 } as Record<string, number>)[l]!;

/** A message as ip sends it: nlmsghdr with REQUEST|ACK and the given flags, then `body`. */
function ipMessage(type: number, flags: number, body: string): Uint8Array {
  const b = hex(body);
  const out = new Uint8Array(16 + b.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, out.length, true);
  dv.setUint16(4, type, true);
  dv.setUint16(6, flags | NLM_F_REQUEST | NLM_F_ACK, true);
  dv.setUint32(8, 1, true);
  out.set(b, 16);
  return out;
}

const Z16 = "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00";
const FD00_2 = "fd 00 00 00 00 00 00 00 00 00 00 00 00 00 00 02";

const ENCODE: [string, Request, Uint8Array][] = [
  [
    "ip link add a3 mtu 1400 master br0 up type veth peer name a3p",
    linkAddRequest({
      kind: "veth",
      name: "a3",
      mtu: 1400,
      master: "br0",
      up: true,
      peer: { name: "a3p" },
    }, resolve),
    ipMessage(
      16,
      0x600,
      `00 00 00 00 00 00 00 00 01 00 00 00 01 00 00 00
       08 00 04 00 78 05 00 00  08 00 0a 00 02 00 00 00  07 00 03 00 61 33 00 00
       2c 00 12 00 08 00 01 00 76 65 74 68  20 00 02 00 1c 00 01 00 ${Z16}
       08 00 03 00 61 33 70 00`,
    ),
  ],
  [
    "ip link add vx0 type vxlan id 42 dstport 4789 local 10.1.0.1 nolearning ttl 64 dev br0",
    linkAddRequest({
      kind: "vxlan",
      name: "vx0",
      id: 42,
      port: 4789,
      local: "10.1.0.1",
      learning: false,
      ttl: 64,
      dev: "br0",
    }, resolve),
    ipMessage(
      16,
      0x600,
      `${Z16} 08 00 03 00 76 78 30 00
       44 00 12 00  09 00 01 00 76 78 6c 61 6e 00 00 00  34 00 02 00
       05 00 05 00 40 00 00 00  08 00 03 00 02 00 00 00  08 00 01 00 2a 00 00 00
       08 00 04 00 0a 01 00 01  05 00 07 00 00 00 00 00  06 00 0f 00 12 b5 00 00`,
    ),
  ],
  [
    "ip link add name mv0 link d0p type macvlan mode bridge",
    linkAddRequest({ kind: "macvlan", name: "mv0", link: 3, mode: "bridge" }, resolve),
    ipMessage(
      16,
      0x600,
      `${Z16} 08 00 05 00 03 00 00 00  08 00 03 00 6d 76 30 00
       1c 00 12 00  0b 00 01 00 6d 61 63 76 6c 61 6e 00  0c 00 02 00 08 00 01 00 04 00 00 00`,
    ),
  ],
  [
    "ip link add name iv0 link d0p type ipvlan mode l3",
    linkAddRequest({ kind: "ipvlan", name: "iv0", link: 3, mode: "l3" }, resolve),
    ipMessage(
      16,
      0x600,
      `${Z16} 08 00 05 00 03 00 00 00  08 00 03 00 69 76 30 00
       24 00 12 00  0a 00 01 00 69 70 76 6c 61 6e 00 00
       14 00 02 00 06 00 01 00 01 00 00 00 06 00 02 00 00 00 00 00`,
    ),
  ],
  [
    "ip link set dev d0 promisc on",
    linkSetRequest(4, { promisc: true }, resolve),
    ipMessage(16, 0, "00 00 00 00 04 00 00 00 00 01 00 00 00 01 00 00"),
  ],
  [
    "ip link set dev d0 type bridge_slave hairpin on",
    linkSetRequest(4, { hairpin: true }, resolve),
    ipMessage(
      16,
      0,
      `00 00 00 00 04 00 00 00 00 00 00 00 00 00 00 00
       20 00 12 00  10 00 01 00 62 72 69 64 67 65 5f 73 6c 61 76 65
       0c 00 05 00 05 00 04 00 01 00 00 00`,
    ),
  ],
  [
    "ip link set dev d0 addrgenmode none",
    linkSetRequest(4, { addrGenMode: "none" }, resolve),
    ipMessage(
      16,
      0,
      `00 00 00 00 04 00 00 00 00 00 00 00 00 00 00 00  10 00 1a 00 0c 00 0a 00 05 00 08 00 01 00 00 00`,
    ),
  ],
  [
    "ip link set dev d0 up",
    linkSetRequest(4, { up: true }, resolve),
    ipMessage(16, 0, "00 00 00 00 04 00 00 00 01 00 00 00 01 00 00 00"),
  ],
  [
    "ip link set dev d0 mtu 1300 master br0",
    linkSetRequest(4, { mtu: 1300, master: "br0" }, resolve),
    ipMessage(
      16,
      0,
      "00 00 00 00 04 00 00 00 00 00 00 00 00 00 00 00 08 00 04 00 14 05 00 00 08 00 0a 00 02 00 00 00",
    ),
  ],
  [
    "ip link del d0",
    linkDelRequest(4),
    ipMessage(17, 0, "00 00 00 00 04 00 00 00 00 00 00 00 00 00 00 00"),
  ],
  [
    "ip addr add 10.1.0.2/24 dev d0",
    addrAddRequest(4, "10.1.0.2/24"),
    ipMessage(20, 0x600, "02 18 00 00 04 00 00 00 08 00 02 00 0a 01 00 02 08 00 01 00 0a 01 00 02"),
  ],
  [
    "ip addr add fd00::2/64 dev d0 nodad noprefixroute",
    addrAddRequest(4, "fd00::2/64", { noDad: true, noPrefixRoute: true }),
    ipMessage(
      20,
      0x600,
      `0a 40 00 00 04 00 00 00  14 00 02 00 ${FD00_2}  08 00 08 00 02 02 00 00
       14 00 01 00 ${FD00_2}`,
    ),
  ],
  [
    "ip route replace 10.2.0.0/16 via 10.1.0.9 proto 111 onlink dev d0",
    routeReplaceRequest(
      { dst: "10.2.0.0/16", via: "10.1.0.9", protocol: 111, onlink: true, dev: "d0" },
      resolve,
    ),
    ipMessage(
      24,
      0x500,
      `02 10 00 00 fe 6f 00 01 04 00 00 00  08 00 01 00 0a 02 00 00
       08 00 05 00 0a 01 00 09  08 00 04 00 04 00 00 00`,
    ),
  ],
  [
    "ip route replace 10.3.0.0/16 dev d0 table 300",
    routeReplaceRequest({ dst: "10.3.0.0/16", dev: "d0", table: 300 }, resolve),
    ipMessage(
      24,
      0x500,
      `02 10 00 00 00 03 fd 01 00 00 00 00  08 00 01 00 0a 03 00 00
       08 00 0f 00 2c 01 00 00  08 00 04 00 04 00 00 00`,
    ),
  ],
  [
    "ip route del 10.2.0.0/16 proto 111",
    routeDelRequest({ dst: "10.2.0.0/16", protocol: 111 }, resolve),
    ipMessage(25, 0, "02 10 00 00 fe 6f ff 00 00 00 00 00 08 00 01 00 0a 02 00 00"),
  ],
  [
    "ip neigh replace 10.1.0.7 lladdr 02:00:00:00:00:07 dev d0 nud permanent",
    neighReplaceRequest(4, { ip: "10.1.0.7", mac: "02:00:00:00:00:07" }),
    ipMessage(
      28,
      0x500,
      `02 00 00 00 04 00 00 00 80 00 00 00  08 00 01 00 0a 01 00 07
       0a 00 02 00 02 00 00 00 00 07 00 00`,
    ),
  ],
  [
    "bridge fdb replace 02:00:00:00:00:08 dev vx0 dst 10.1.0.8 self permanent",
    fdbAddRequest(7, { mac: "02:00:00:00:00:08", dst: "10.1.0.8", self: true }),
    ipMessage(
      28,
      0x500,
      `07 00 00 00 07 00 00 00 c0 00 02 00  0a 00 02 00 02 00 00 00 00 08 00 00
       08 00 01 00 0a 01 00 08`,
    ),
  ],
];

Deno.test("netlink requests encode to the bytes ip sends for the same command", () => {
  for (const [what, req, want] of ENCODE) {
    const got = encodeMessage({ ...req, flags: req.flags | NLM_F_REQUEST | NLM_F_ACK }, 1);
    assertEquals(toHex(got), toHex(want), what);
  }
});

Deno.test("hand-built requests: veth peer in another namespace, deletes, link by name", () => {
  const cases: [string, Request, string][] = [
    [
      "veth with its peer created in the namespace of fd 9, up, MTU 1450 on both ends",
      linkAddRequest({
        kind: "veth",
        name: "h1",
        mtu: 1450,
        peer: { name: "eth0", mtu: 1450, netnsFd: 9, mac: "02:00:00:00:00:01" },
      }, resolve),
      // ifinfomsg; IFLA_MTU 1450; IFLA_IFNAME "h1"; IFLA_LINKINFO { KIND "veth", DATA {
      // VETH_INFO_PEER: ifinfomsg, IFLA_IFNAME "eth0", IFLA_MTU, IFLA_ADDRESS, IFLA_NET_NS_FD 9 } }
      `${Z16}  08 00 04 00 aa 05 00 00  07 00 03 00 68 31 00 00
       4c 00 12 00  08 00 01 00 76 65 74 68  40 00 02 00  3c 00 01 00 ${Z16}
       09 00 03 00 65 74 68 30 00 00 00 00  08 00 04 00 aa 05 00 00
       0a 00 01 00 02 00 00 00 00 01 00 00  08 00 1c 00 09 00 00 00`,
    ],
    [
      "link set by name (no rename): IFLA_IFNAME picks the link, down",
      linkSetRequest("eth0", { up: false }, resolve),
      `00 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00  09 00 03 00 65 74 68 30 00 00 00 00`,
    ],
    [
      "link rename and move to the namespace of fd 5, nomaster",
      linkSetRequest("d0", { name: "eth0", netnsFd: 5, master: null }, resolve),
      `00 00 00 00 04 00 00 00 00 00 00 00 00 00 00 00  09 00 03 00 65 74 68 30 00 00 00 00
       08 00 0a 00 00 00 00 00  08 00 1c 00 05 00 00 00`,
    ],
    [
      "address delete (IPv4 /32)",
      addrDelRequest(4, "10.9.0.1"),
      "02 20 00 00 04 00 00 00 08 00 02 00 0a 09 00 01 08 00 01 00 0a 09 00 01",
    ],
    [
      "default IPv6 route with metric, src and mtu",
      routeReplaceRequest(
        { dst: "default", via: "fe80::1", dev: 3, metric: 1024, mtu: 1400 },
        resolve,
      ),
      `0a 00 00 00 fe 03 00 01 00 00 00 00
       14 00 05 00 fe 80 00 00 00 00 00 00 00 00 00 00 00 00 00 01
       08 00 06 00 00 04 00 00  0c 00 08 00 08 00 02 00 78 05 00 00  08 00 04 00 03 00 00 00`,
    ],
    [
      "neighbour delete (IPv6)",
      neighDelRequest(2, "fd00::2"),
      `0a 00 00 00 02 00 00 00 00 00 00 00  14 00 01 00 ${FD00_2}`,
    ],
    [
      "fdb delete with dst",
      fdbDelRequest(7, { mac: "00:00:00:00:00:00", dst: "10.0.0.1" }),
      `07 00 00 00 07 00 00 00 00 00 02 00  0a 00 02 00 00 00 00 00 00 00 00 00
       08 00 01 00 0a 00 00 01`,
    ],
  ];
  for (const [what, req, body] of cases) {
    const got = encodeMessage(req, 1).subarray(16);
    assertEquals(toHex(got), toHex(hex(body)), what);
  }
});

Deno.test("bad input is refused before anything is sent", () => {
  const bad: [string, () => unknown][] = [
    ["vxlan id 0", () => linkAddRequest({ kind: "vxlan", name: "v", id: 0 }, resolve)],
    ["vxlan id 2^24", () => linkAddRequest({ kind: "vxlan", name: "v", id: 1 << 24 }, resolve)],
    ["bad mac", () => linkAddRequest({ kind: "bridge", name: "b", mac: "02:00:00" }, resolve)],
    ["bad address", () => addrAddRequest(1, "10.0.0.256/24")],
    ["prefix too long", () => addrAddRequest(1, "10.0.0.1/33")],
    ["v6 prefix too long", () => addrAddRequest(1, "fd00::1/129")],
    ["mixed families", () => routeReplaceRequest({ dst: "10.0.0.0/8", via: "fd00::1" }, resolve)],
    ["unknown scope", () => routeReplaceRequest({ dst: "10.0.0.0/8", scope: "galaxy" }, resolve)],
    ["two ::", () => ipBytes("fd00::1::2")],
  ];
  for (const [what, fn] of bad) {
    try {
      fn();
    } catch (e) {
      assert(e instanceof TypeError || e instanceof RangeError, `${what}: ${e}`);
      continue;
    }
    throw new Error(`${what}: accepted`);
  }
});

Deno.test("IP addresses parse and print as ip prints them", () => {
  const cases: [string, string][] = [
    ["10.1.0.2", "10.1.0.2"],
    ["fd00::2", "fd00::2"],
    ["FD00:0:0:0:0:0:0:2", "fd00::2"],
    ["::", "::"],
    ["::1", "::1"],
    ["fe80::", "fe80::"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"],
    ["::ffff:10.1.2.3", "::ffff:a01:203"],
  ];
  for (const [text, want] of cases) assertEquals(formatIpBytes(ipBytes(text)), want, text);
  assertEquals(parsePrefix("10.0.0.0/8").len, 8);
  assertEquals(parsePrefix("fd00::1").len, 128);
  assertEquals(toHex(macBytes("2:0:a:b:c:FF")), "02 00 0a 0b 0c ff");
});

/** A kernel message: nlmsghdr + `body`. */
function kernelMessage(type: number, flags: number, body: string) {
  const b = ipMessage(type, 0, body);
  new DataView(b.buffer).setUint16(6, flags, true);
  return decodeMessages(b)[0]!;
}

Deno.test("messages from the kernel decode to what ip shows for them", () => {
  // `ip route`: 10.1.0.0/24 dev d0 proto kernel scope link src 10.1.0.2 linkdown
  const route = decodeRoute(kernelMessage(
    24,
    0x22,
    `02 18 00 00 fe 02 fd 01 10 00 00 00  08 00 0f 00 fe 00 00 00  08 00 01 00 0a 01 00 00
     08 00 07 00 0a 01 00 02  08 00 04 00 03 00 00 00`,
  ));
  assertEquals(route, {
    family: 4,
    dst: "10.1.0.0/24",
    protocol: 2,
    scope: 253,
    table: 254,
    type: "unicast",
    onlink: false,
    cloned: false,
    src: "10.1.0.2",
    oif: 3,
  });
  // `ip addr`: inet 10.1.0.2/24 scope global d0 (valid_lft forever)
  const addr = decodeAddr(kernelMessage(
    20,
    0x22,
    `02 18 80 00 03 00 00 00  08 00 01 00 0a 01 00 02  08 00 02 00 0a 01 00 02
     07 00 03 00 64 30 00 00  08 00 08 00 80 00 00 00
     14 00 06 00 ff ff ff ff ff ff ff ff 4b ff 0c 00 4b ff 0c 00`,
  ));
  assertEquals(addr, {
    family: 4,
    index: 3,
    address: "10.1.0.2",
    prefixlen: 24,
    scope: "global",
    flags: 0x80,
    permanent: true,
    tentative: false,
    dadfailed: false,
    noPrefixRoute: false,
    label: "d0",
  });
  // A veth port of bridge 2, peer index 5 in the namespace with id 0, up with carrier.
  const link = decodeLink(kernelMessage(
    16,
    0,
    `00 00 01 00 06 00 00 00 43 10 01 00 00 00 00 00
     07 00 03 00 61 33 00 00  08 00 04 00 78 05 00 00  05 00 10 00 06 00 00 00
     0a 00 01 00 9e 97 98 a6 3b 78 00 00  08 00 0a 00 02 00 00 00  08 00 05 00 05 00 00 00
     08 00 25 00 00 00 00 00
     1c 00 12 00  09 00 01 00 76 65 74 68 00 00 00 00  0b 00 04 00 62 72 69 64 67 65 00 00`,
  ));
  assertEquals(link, {
    index: 6,
    name: "a3",
    flags: 0x11043,
    up: true,
    lowerUp: true,
    promisc: false,
    operstate: "UP",
    mtu: 1400,
    mac: "9e:97:98:a6:3b:78",
    masterIndex: 2,
    link: 5,
    linkNetnsid: 0,
    kind: "veth",
    slaveKind: "bridge",
  });
  // An FDB entry on vx0: 02:00:00:00:00:08 dst 10.1.0.8 self permanent
  const fdb = decodeNeigh(kernelMessage(
    28,
    0x2,
    `07 00 00 00 07 00 00 00 80 00 02 00  0a 00 02 00 02 00 00 00 00 08 00 00
     08 00 01 00 0a 01 00 08  08 00 07 00 2a 00 00 00`,
  ));
  assertEquals(fdb.family, "bridge");
  assertEquals([fdb.mac, fdb.dst, fdb.self, fdb.states, fdb.vni], [
    "02:00:00:00:00:08",
    "10.1.0.8",
    true,
    ["PERMANENT"],
    42,
  ]);
});

Deno.test("NLMSG_ERROR: errno, extended-ACK text, and the typed error it maps to", () => {
  // error -17, the capped request header (16 bytes), then NLMSGERR_ATTR_MSG "Link exists".
  const m = kernelMessage(
    2,
    0x300,
    `ef ff ff ff  24 00 00 00 10 00 05 06 01 00 00 00 00 00 00 00
     10 00 01 00 4c 69 6e 6b 20 65 78 69 73 74 73 00`,
  );
  assertEquals(decodeError(m), { errno: 17, message: "Link exists" });
  assertEquals(decodeError(kernelMessage(2, 0x100, "00 00 00 00 " + Z16)), { errno: 0 });
  const map: [number, unknown][] = [
    [17, IpExistsError],
    [19, IpNotFoundError],
    [2, IpNotFoundError],
    [3, IpNotFoundError],
    [99, IpNotFoundError],
    [22, IpInvalidError],
    [100, IpInvalidError],
    [101, IpInvalidError],
    [95, IpUnsupportedError],
  ];
  for (const [errno, cls] of map) {
    const e = netlinkError("link add x", errno, undefined, "/var/run/netns/p");
    assert(e instanceof (cls as typeof IpExistsError), `${errno} → ${e.name}`);
    assertEquals(e.errno, errno);
  }
  const e = netlinkError("link add x type veth peer y", 17, "Link exists");
  assertEquals(
    e.message,
    "ip link add x type veth peer y failed: Link exists: file exists (errno 17)",
  );
});
