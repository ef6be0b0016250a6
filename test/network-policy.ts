/**
 * What a set of Kubernetes NetworkPolicies (networking.k8s.io/v1) allows, as pure logic: our test
 * cluster's CNI (the bridge plugin) enforces none, so test/integration/network-policies.test.ts
 * asks this instead. It follows the API reference and the concept page
 * (kubernetes.io/docs/concepts/services-networking/network-policies/):
 *
 * - A policy selects the pods of its own namespace that match spec.podSelector ({} matches all).
 * - policyTypes says which directions it governs. Left out: Ingress always, Egress when it has
 *   egress rules.
 * - A pod selected by some policy for a direction is isolated there: a connection passes only if
 *   a rule of one of those policies allows it (rules only add, none denies). Unselected: all pass.
 * - A connection needs both ends' consent: egress of the source and ingress of the destination.
 * - A rule allows a connection when one of its peers matches the other end (no `from`/`to`: any)
 *   and one of its ports matches (no `ports`: any port and protocol).
 * - Peers: podSelector alone means pods of the policy's namespace; namespaceSelector alone, every
 *   pod of the matching namespaces; both, the matching pods of the matching namespaces; ipBlock, an
 *   address in cidr and in none of `except`, of the same IP family. An ipBlock here matches pod
 *   addresses too: the API leaves that to the CNI, and matching is the cautious reading for the
 *   denials the tests assert.
 * - Ports: protocol (default TCP) and a number, a range (endPort) or a name; no port, every port of
 *   that protocol. A name is resolved against the destination pod's container ports (in an egress
 *   rule the peer, in an ingress rule the policy's own pod) and never matches an outside address.
 *
 * Not modelled: traffic from a pod's own node (kubelet probes), which is always allowed, and a pod's
 * traffic to itself; Services (a connection names the pod behind the Service, as policies see it
 * after the address translation).
 */
import { BlockList, isIP } from 'node:net';

export type Labels = Record<string, string>;
export type LabelSelector = {
  matchLabels?: Labels;
  matchExpressions?: Array<{ key: string; operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist'; values?: string[] }>;
};
export type Protocol = 'TCP' | 'UDP' | 'SCTP';
export type PolicyPort = { protocol?: Protocol; port?: number | string; endPort?: number };
export type Peer = { podSelector?: LabelSelector; namespaceSelector?: LabelSelector; ipBlock?: { cidr: string; except?: string[] } };
export type Rule = { from?: Peer[]; to?: Peer[]; ports?: PolicyPort[] };
export type NetworkPolicy = {
  metadata: { name: string; namespace?: string };
  spec: { podSelector: LabelSelector; policyTypes?: Array<'Ingress' | 'Egress'>; ingress?: Rule[]; egress?: Rule[] };
};

/** A pod as policies see it: its namespace, labels, address and container ports. */
export type Pod = {
  kind: 'pod';
  name: string;
  namespace: string;
  labels: Labels;
  ip: string;
  ports: Array<{ name?: string; containerPort: number; protocol?: Protocol }>;
};
/** An address that is no pod (S3, the API server): only an ipBlock can match it. */
export type Address = { kind: 'address'; name: string; ip: string };
export type Endpoint = Pod | Address;
export type Connection = { from: Endpoint; to: Endpoint; port: number; protocol?: Protocol };

export type Cluster = {
  policies: NetworkPolicy[];
  /** Namespace name -> its labels (kubernetes.io/metadata.name included, as the API server sets it). */
  namespaces: Record<string, Labels>;
};

export function selects(selector: LabelSelector, labels: Labels): boolean {
  const byLabels = Object.entries(selector.matchLabels ?? {}).every(([k, v]) => labels[k] === v);
  return (
    byLabels &&
    (selector.matchExpressions ?? []).every(({ key, operator, values = [] }) => {
      const has = key in labels;
      if (operator === 'In') return has && values.includes(labels[key]);
      if (operator === 'NotIn') return !has || !values.includes(labels[key]);
      if (operator === 'Exists') return has;
      if (operator === 'DoesNotExist') return !has;
      throw new Error(`unknown selector operator ${operator}`);
    })
  );
}

export function inCidr(ip: string, cidr: string): boolean {
  const [network, bits] = cidr.split('/');
  const family = isIP(network);
  if (family === 0 || !/^\d+$/.test(bits ?? '')) throw new Error(`not a CIDR: ${cidr}`);
  if (isIP(ip) !== family) return false; // BlockList would match IPv4 inside ::/0; a policy does not
  const type = family === 4 ? 'ipv4' : 'ipv6';
  const list = new BlockList();
  list.addSubnet(network, Number(bits), type);
  return list.check(ip, type);
}

const directions = (p: NetworkPolicy): Array<'Ingress' | 'Egress'> =>
  p.spec.policyTypes ?? ['Ingress', ...((p.spec.egress ?? []).length > 0 ? (['Egress'] as const) : [])];

function peerMatches(peer: Peer, other: Endpoint, policyNamespace: string, cluster: Cluster): boolean {
  if (!peer.ipBlock === !(peer.podSelector || peer.namespaceSelector))
    throw new Error(`a peer is an ipBlock or selectors, not both or neither: ${JSON.stringify(peer)}`);
  if (peer.ipBlock) {
    return inCidr(other.ip, peer.ipBlock.cidr) && !(peer.ipBlock.except ?? []).some((c) => inCidr(other.ip, c));
  }
  if (other.kind !== 'pod') return false;
  const namespaceOk = peer.namespaceSelector
    ? selects(peer.namespaceSelector, cluster.namespaces[other.namespace] ?? {})
    : other.namespace === policyNamespace;
  return namespaceOk && (!peer.podSelector || selects(peer.podSelector, other.labels));
}

function portMatches(p: PolicyPort, c: Connection): boolean {
  const protocol = p.protocol ?? 'TCP';
  if (protocol !== (c.protocol ?? 'TCP')) return false;
  if (p.port === undefined) return true;
  if (typeof p.port === 'number') return p.endPort === undefined ? c.port === p.port : c.port >= p.port && c.port <= p.endPort;
  const to = c.to;
  return (
    to.kind === 'pod' && to.ports.some((cp) => cp.name === p.port && (cp.protocol ?? 'TCP') === protocol && cp.containerPort === c.port)
  );
}

/** Whether `pod`'s policies let the connection through in one direction (its egress or its ingress). */
function passes(pod: Endpoint, direction: 'Ingress' | 'Egress', c: Connection, cluster: Cluster): boolean {
  if (pod.kind !== 'pod') return true;
  const other = direction === 'Egress' ? c.to : c.from;
  const governing = cluster.policies.filter(
    (p) => (p.metadata.namespace ?? '') === pod.namespace && selects(p.spec.podSelector, pod.labels) && directions(p).includes(direction),
  );
  if (governing.length === 0) return true;
  return governing.some((p) =>
    ((direction === 'Egress' ? p.spec.egress : p.spec.ingress) ?? []).some((rule) => {
      const peers = direction === 'Egress' ? rule.to : rule.from;
      const peerOk = !peers?.length || peers.some((peer) => peerMatches(peer, other, pod.namespace, cluster));
      return peerOk && (!rule.ports?.length || rule.ports.some((port) => portMatches(port, c)));
    }),
  );
}

/** Whether the policies allow the connection: the source's egress and the destination's ingress. */
export function allowed(c: Connection, cluster: Cluster): boolean {
  return passes(c.from, 'Egress', c, cluster) && passes(c.to, 'Ingress', c, cluster);
}
