/**
 * The bgp backend's pure parts: which sessions a node has in each topology, the BIRD
 * configuration rendered for them (and accepted by BIRD's own parser when bird2 is
 * installed), and `birdc show protocols all` read back.
 */
import { assert, assertEquals, assertMatch, assertThrows } from "../../tests/support/assert.ts";
import { runCommand } from "../../netns/netns.ts";
import {
  BGP_DEFAULTS,
  BgpBackend,
  bgpSessionsFor,
  type BgpSettings,
  defaultAsNumber,
  defaultRouterId,
} from "./bgp.ts";
import { bgpSessions, BIRD_BIN, birdString, parseBirdProtocols } from "./bird.ts";
import type { Peer, RoutingState } from "./types.ts";

const local = {
  node: "node1",
  ips: ["172.31.0.11", "fd00:172:31::11"],
  blocks: ["10.244.1.0/24", "fd00:10:244:1::/64"],
};
const peer = (n: number, ips: string[], backend?: Record<string, unknown>): Peer => ({
  node: `node${n}`,
  ips,
  blocks: [`10.244.${n}.0/24`, `fd00:10:244:${n}::/64`],
  ...(backend ? { backend } : {}),
});
const dual = (n: number, backend?: Record<string, unknown>) =>
  peer(n, [`172.31.0.${10 + n}`, `fd00:172:31::${10 + n}`], backend);
const settings = (s: Partial<BgpSettings> = {}): BgpSettings => ({ ...BGP_DEFAULTS, ...s });

Deno.test("bgp identity: AS and router id default from the node address", () => {
  assertEquals(defaultAsNumber(["172.31.0.11"]), 4_200_000_000 + ((31 << 16) + 11));
  // Only the low 26 bits: 10.x and 74.x (same low 26 bits) collide, neighbours do not.
  assertEquals(defaultAsNumber(["10.0.0.1"]), defaultAsNumber(["74.0.0.1"]));
  assert(defaultAsNumber(["172.31.0.11"]) !== defaultAsNumber(["172.31.0.12"]));
  assertEquals(defaultAsNumber(["fd00::1:2"]), 4_200_000_000 + 0x10002);
  assert(defaultAsNumber(["255.255.255.255"]) <= 4_294_967_294);
  assertEquals(defaultRouterId(["fd00:172:31::11", "172.31.0.11"]), "172.31.0.11");
  assertEquals(defaultRouterId(["fd00:172:31::a0b:c0d"]), "10.11.12.13");
  assertThrows(() => defaultRouterId([]), Error, "node address");
});

Deno.test("bgp sessions: mesh, reflectors, global peers, missing families (table)", () => {
  const cases: {
    name: string;
    state: RoutingState;
    s: BgpSettings;
    want: string[];
    skipped?: string[];
  }[] = [
    {
      name: "mesh: every peer, both families, eBGP multihop with the peer's default AS",
      state: { local, peers: [dual(3), dual(2)] },
      s: settings(),
      want: [
        `node_node2_v4 172.31.0.12 as ${defaultAsNumber(["172.31.0.12"])} multihop own`,
        `node_node2_v6 fd00:172:31::12 as ${defaultAsNumber(["172.31.0.12"])} multihop own`,
        `node_node3_v4 172.31.0.13 as ${defaultAsNumber(["172.31.0.13"])} multihop own`,
        `node_node3_v6 fd00:172:31::13 as ${defaultAsNumber(["172.31.0.13"])} multihop own`,
      ],
    },
    {
      name: "mesh: the AS a peer published wins over the default",
      state: { local, peers: [peer(2, ["172.31.0.12"], { type: "bgp", asNumber: 64512 })] },
      s: settings(),
      want: ["node_node2_v4 172.31.0.12 as 64512 multihop own"],
      skipped: ["node2 fd00:10:244:2::/64 no IPv6 session: node node2 has no IPv6 address"],
    },
    {
      name: "no mesh, client: only the reflectors",
      state: {
        local,
        peers: [dual(2, { routeReflector: true, asNumber: 64512 }), dual(3, { asNumber: 64512 })],
      },
      s: settings({ nodeMesh: false, asNumber: 64512 }),
      want: [
        "node_node2_v4 172.31.0.12 as 64512 multihop own",
        "node_node2_v6 fd00:172:31::12 as 64512 multihop own",
      ],
    },
    {
      name: "no mesh, reflector: every node, clients as rr clients, reflecting",
      state: {
        local,
        peers: [dual(2, { routeReflector: true, asNumber: 64512 }), dual(3, { asNumber: 64512 })],
      },
      s: settings({ nodeMesh: false, asNumber: 64512, routeReflector: true }),
      want: [
        "node_node2_v4 172.31.0.12 as 64512 multihop own+bgp",
        "node_node2_v6 fd00:172:31::12 as 64512 multihop own+bgp",
        "node_node3_v4 172.31.0.13 as 64512 multihop rr-client own+bgp",
        "node_node3_v6 fd00:172:31::13 as 64512 multihop rr-client own+bgp",
      ],
    },
    {
      name: "no mesh, global peers only (one per family; a family the node lacks is left out)",
      state: { local: { ...local, ips: ["172.31.0.11"] }, peers: [dual(2)] },
      s: settings({
        nodeMesh: false,
        peers: [
          { address: "172.31.0.1", asNumber: 65000, password: "pw" },
          { address: "fd00:172:31::1", asNumber: 65000 },
        ],
      }),
      want: ["peer1_v4 172.31.0.1 as 65000 password own"],
    },
    {
      name: "node names that are not BIRD names are made so, without collisions",
      state: {
        local,
        peers: [peer(2, ["172.31.0.12"]), { ...peer(3, ["172.31.0.13"]) }].map((p, i) => ({
          ...p,
          node: i ? "a.b" : "a-b",
        })),
      },
      s: settings(),
      want: [
        `node_a_b_2_v4 172.31.0.13 as ${defaultAsNumber(["172.31.0.13"])} multihop own`,
        `node_a_b_v4 172.31.0.12 as ${defaultAsNumber(["172.31.0.12"])} multihop own`,
      ],
      skipped: [
        "a-b fd00:10:244:2::/64 no IPv6 session: node a-b has no IPv6 address",
        "a.b fd00:10:244:3::/64 no IPv6 session: node a.b has no IPv6 address",
      ],
    },
  ];
  for (const c of cases) {
    const { sessions, skipped } = bgpSessionsFor(c.state, c.s);
    assertEquals(
      sessions.map((x) =>
        [
          x.name,
          x.neighbor,
          "as",
          x.neighborAs,
          ...(x.multihop ? ["multihop"] : []),
          ...(x.rrClient ? ["rr-client"] : []),
          ...(x.password ? ["password"] : []),
          x.export,
        ].join(" ")
      ).sort(),
      c.want.sort(),
      c.name,
    );
    assertEquals(
      skipped.map((x) => `${x.node} ${x.block} ${x.reason}`).sort(),
      (c.skipped ?? []).sort(),
      c.name,
    );
  }
});

/** BIRD's own parser (`bird -p`), when bird2 is installed; undefined when it is not. */
async function birdParses(text: string): Promise<string | undefined> {
  try {
    Deno.statSync(BIRD_BIN);
  } catch {
    return undefined;
  }
  const file = await Deno.makeTempFile({ suffix: ".conf" });
  try {
    await Deno.writeTextFile(file, text);
    const r = await runCommand(undefined, BIRD_BIN, { args: ["-p", "-c", file] });
    return r.code === 0 ? "ok" : r.stderr.trim();
  } finally {
    await Deno.remove(file);
  }
}

Deno.test("bird config: what each topology renders, and BIRD's parser accepts it", async () => {
  const backend = (s: BgpSettings) =>
    new BgpBackend({
      settings: s,
      clusterCIDRs: ["10.244.0.0/16", "fd00:10:244::/48"],
      dir: "/run/ohno",
    });
  const rr = { routeReflector: true, asNumber: 64512 };
  const cases: {
    name: string;
    s: BgpSettings;
    state: RoutingState;
    has: RegExp[];
    not?: RegExp[];
  }[] = [
    {
      name: "mesh",
      s: settings(),
      state: { local, peers: [dual(2)] },
      has: [
        /^router id 172\.31\.0\.11;$/m,
        /^log "\/run\/ohno\/bird\.log"/m,
        // Own blocks as blackholes under the bridge's connected route.
        /route 10\.244\.1\.0\/24 blackhole \{ krt_metric = 4242; \};/,
        /route fd00:10:244:1::\/64 blackhole \{ krt_metric = 4242; \};/,
        // Only the pod space, never own blocks, is imported from peers.
        /if net ~ \[ 10\.244\.0\.0\/16\+ \] && !\(net ~ \[ 10\.244\.1\.0\/24\+ \]\) then accept;/,
        // The kernel gets BGP routes and the blackholes, nothing else.
        /export where proto = "ohno_blocks4" \|\| source = RTS_BGP;/,
        /protocol bgp node_node2_v4 \{\n {2}description "node2";\n {2}local 172\.31\.0\.11 as 4202031627;\n {2}neighbor 172\.31\.0\.12 as 4202031628;\n {2}multihop;\n {2}hold time 90;\n {2}keepalive time 30;\n {2}connect delay time 1;\n {2}connect retry time 5;\n {2}error wait time 1, 10;\n {2}graceful restart on;\n {2}ipv4 \{\n {4}import filter ohno_import4;\n {4}export filter ohno_export_own4;\n {2}\};\n\}/,
        /protocol bgp node_node2_v6 \{[^}]*neighbor fd00:172:31::12 as/,
        /^ {2}graceful restart on;$/m,
      ],
      not: [/rr client/, /password/],
    },
    {
      name: "reflector with a client, no graceful restart, hold 9",
      s: settings({ ...rr, nodeMesh: false, gracefulRestart: false, holdTime: 9 }),
      state: { local, peers: [dual(2, { asNumber: 64512 })] },
      has: [
        /rr client;\n {2}rr cluster id 172\.31\.0\.11;/,
        /export filter ohno_export_reflect4;/,
        /hold time 9;\n {2}keepalive time 3;/,
        /local 172\.31\.0\.11 as 64512;\n {2}neighbor 172\.31\.0\.12 as 64512;/,
      ],
      not: [/graceful restart/],
    },
    {
      name: "a top-of-rack peer with a password, set AS and router id",
      s: settings({
        nodeMesh: false,
        asNumber: 65101,
        routerId: "10.9.9.9",
        peers: [{ address: "172.31.0.1", asNumber: 65000, password: "s3cret" }],
      }),
      state: { local, peers: [dual(2)] },
      has: [
        /^router id 10\.9\.9\.9;$/m,
        /protocol bgp peer1_v4 \{\n {2}description "172\.31\.0\.1";\n {2}local 172\.31\.0\.11 as 65101;\n {2}neighbor 172\.31\.0\.1 as 65000;\n {2}hold time 90;/,
        /password "s3cret";/,
      ],
      not: [/protocol bgp node_/, /peer1_v4 \{[^}]*multihop/],
    },
    {
      name: "a node without blocks yet: empty static protocols",
      s: settings(),
      state: { local: { ...local, blocks: [] }, peers: [] },
      has: [
        /protocol static ohno_blocks4 \{\n {2}ipv4;\n\}/,
        /if net ~ \[ 10\.244\.0\.0\/16\+ \] then accept;/,
      ],
      not: [/protocol bgp/],
    },
  ];
  for (const c of cases) {
    const { text } = backend(c.s).render(c.state);
    for (const re of c.has) assertMatch(text, re, c.name);
    for (const re of c.not ?? []) assert(!re.test(text), `${c.name}: ${re} in\n${text}`);
    const parsed = await birdParses(text);
    if (parsed !== undefined) assertEquals(parsed, "ok", `${c.name}:\n${text}`);
    // Rendering is deterministic: the agent reloads BIRD only when the text changes.
    assertEquals(backend(c.s).render(structuredClone(c.state)).text, text);
  }
  assertThrows(() => birdString('a"b'), TypeError, "cannot be written");
});

const PROTOCOLS = `BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     15:55:48.802  

kernel4    Kernel     master4    up     15:55:48.802  
  Channel ipv4
    State:          UP
    Table:          master4
    Routes:         1 imported, 2 exported, 1 preferred

node_node2_v4 BGP        ---        up     15:55:53.593  Established   
  Description:    node2
  BGP state:          Established
    Neighbor address: 172.31.1.12
    Neighbor AS:      4202031884
    Local AS:         4202031627
    Neighbor ID:      172.31.1.12
    Session:          external multihop AS4
    Source address:   172.31.0.11
    Hold timer:       85.973/90
  Channel ipv4
    State:          UP
    Table:          master4
    Input filter:   ohno_import4
    Output filter:  ohno_export_own4
    Routes:         1 imported, 1 exported, 1 preferred
    Route change stats:     received   rejected   filtered    ignored   accepted
      Import updates:              1          0          0          0          1
    BGP Next hop:   172.31.0.11

peer1_v4   BGP        ---        start  15:55:48.802  Active        Socket: Connection refused
  Description:    172.31.0.1
  BGP state:          Active
    Neighbor address: 172.31.0.1
    Neighbor AS:      65000
    Local AS:         4202031627
    Connect delay:    3.744/5
    Last error:       Socket: Connection refused
  Channel ipv4
    State:          DOWN
    Table:          master4
`;

Deno.test("birdc show protocols all: protocols and BGP sessions read back", () => {
  const ps = parseBirdProtocols(PROTOCOLS);
  assertEquals(ps.map((p) => [p.name, p.proto, p.state]), [
    ["device1", "Device", "up"],
    ["kernel4", "Kernel", "up"],
    ["node_node2_v4", "BGP", "up"],
    ["peer1_v4", "BGP", "start"],
  ]);
  assertEquals(bgpSessions(ps), [
    {
      name: "node_node2_v4",
      peer: "node2",
      neighbor: "172.31.1.12",
      established: true,
      state: "Established",
      routesReceived: 1,
    },
    {
      name: "peer1_v4",
      peer: "172.31.0.1",
      neighbor: "172.31.0.1",
      established: false,
      state: "Active",
      routesReceived: 0,
      lastError: "Socket: Connection refused",
    },
  ]);
  assertEquals(ps[3]!.info, "Active        Socket: Connection refused");
  assertEquals(parseBirdProtocols(""), []);
});
