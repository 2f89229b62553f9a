import type { IncomingMessage } from 'node:http';
import net from 'node:net';

// Client addresses for per-IP limits and the debug endpoints. Behind nginx every peer is nginx,
// so the forwarded address counts, but only when the peer is one of the configured proxies
// (TRUSTED_PROXIES): anyone else could claim any address in X-Real-IP.

/** Proxies whose X-Real-IP / X-Forwarded-For are believed (default: this host's nginx). */
export const DEFAULT_TRUSTED_PROXIES: readonly string[] = ['127.0.0.1/32', '::1/128'];

/** Peer addresses whose trust is remembered before the memory starts over. */
const TRUSTED_ANSWERS_MAX = 10_000;

/** Matches peer addresses against a list of CIDRs (IPv4 and IPv6). */
export class TrustedProxies {
  readonly #list = new net.BlockList();
  // Every handshake asks about its peer, and a BlockList check builds a SocketAddress each time;
  // peers repeat (behind nginx there is one), so answers are remembered, bounded.
  readonly #answers = new Map<string, boolean>();
  /** The CIDRs as given (normalised to address/prefix). */
  readonly cidrs: readonly string[];

  /** Builds the matcher; throws RangeError naming the first entry that is not an address or CIDR. */
  constructor(entries: readonly string[]) {
    const cidrs: string[] = [];
    for (const raw of entries) {
      const parsed = parseCidr(raw);
      if (!parsed) throw new RangeError(`not an IP address or CIDR: ${JSON.stringify(raw)}`);
      this.#list.addSubnet(parsed.address, parsed.prefix, parsed.family);
      cidrs.push(`${parsed.address}/${parsed.prefix}`);
    }
    this.cidrs = cidrs;
  }

  /** True when `address` lies in one of the trusted CIDRs. */
  has(address: string): boolean {
    const known = this.#answers.get(address);
    if (known !== undefined) return known;
    const family = net.isIPv4(address) ? 'ipv4' : net.isIPv6(address) ? 'ipv6' : undefined;
    const trusted = family !== undefined && this.#list.check(address, family);
    if (this.#answers.size >= TRUSTED_ANSWERS_MAX) this.#answers.clear();
    this.#answers.set(address, trusted);
    return trusted;
  }
}

/** An address or CIDR (`10.0.0.0/8`, `192.0.2.7`, `::1`, `fd00::/8`); undefined when malformed. */
export function parseCidr(raw: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const [address = '', prefixText, extra] = raw.trim().split('/');
  if (extra !== undefined) return undefined;
  const family = net.isIPv4(address) ? 'ipv4' : net.isIPv6(address) ? 'ipv6' : undefined;
  if (!family) return undefined;
  const max = family === 'ipv4' ? 32 : 128;
  if (prefixText !== undefined && !/^\d{1,3}$/.test(prefixText)) return undefined;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  return prefix <= max ? { address, prefix, family } : undefined;
}

/** The socket peer address without the IPv4-mapped IPv6 prefix. */
export function peerAddress(req: IncomingMessage): string {
  const addr = req.socket.remoteAddress ?? '';
  return addr.startsWith('::ffff:') ? addr.slice(7) : addr;
}

/** True for loopback addresses (127.0.0.0/8, ::1). */
export function isLoopbackAddress(address: string): boolean {
  const addr = address.startsWith('::ffff:') ? address.slice(7) : address;
  return (net.isIPv4(addr) && addr.startsWith('127.')) || addr === '::1';
}

/** True when the request carries any proxy forwarding header. */
export function hasForwardingHeaders(req: IncomingMessage): boolean {
  const h = req.headers;
  return h['x-real-ip'] !== undefined || h['x-forwarded-for'] !== undefined || h.forwarded !== undefined;
}

/** The address forwarded by a proxy (X-Real-IP, else the last X-Forwarded-For hop). */
export function forwardedAddress(req: IncomingMessage): string | undefined {
  const real = req.headers['x-real-ip'];
  if (typeof real === 'string' && net.isIP(real.trim())) return real.trim();
  const xff = req.headers['x-forwarded-for'];
  const list = Array.isArray(xff) ? xff.join(',') : xff;
  const last = list?.split(',').at(-1)?.trim();
  return last && net.isIP(last) ? last : undefined;
}

/** The client address limits apply to: the forwarded one only when the peer is a trusted proxy. */
export function clientAddress(req: IncomingMessage, trusted: TrustedProxies): string {
  const peer = peerAddress(req);
  if (!trusted.has(peer)) return peer;
  return forwardedAddress(req) ?? peer;
}
