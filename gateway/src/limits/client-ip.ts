import type { IncomingMessage } from 'node:http';
import net from 'node:net';

// Client addresses for per-IP limits and the debug endpoints' "internal callers only" rule.
// Behind nginx every peer is nginx, so the forwarded address counts, but only when the peer
// itself is loopback or private (a public client cannot claim another address).

/** The socket peer address without the IPv4-mapped IPv6 prefix. */
export function peerAddress(req: IncomingMessage): string {
  const addr = req.socket.remoteAddress ?? '';
  return addr.startsWith('::ffff:') ? addr.slice(7) : addr;
}

/** True for loopback, RFC 1918, link-local, CGNAT and IPv6 unique-local addresses. */
export function isPrivateAddress(address: string): boolean {
  const addr = address.startsWith('::ffff:') ? address.slice(7) : address;
  if (net.isIPv4(addr)) {
    const [a = 0, b = 0] = addr.split('.').map(Number);
    return a === 127 || a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || (a === 169 && b === 254) || (a === 100 && b >= 64 && b <= 127);
  }
  if (net.isIPv6(addr)) {
    const lower = addr.toLowerCase();
    return lower === '::1' || lower.startsWith('fc') || lower.startsWith('fd') || lower.startsWith('fe80:');
  }
  return false;
}

/** The address forwarded by a trusted proxy (X-Real-IP, else the last X-Forwarded-For hop). */
export function forwardedAddress(req: IncomingMessage): string | undefined {
  const real = req.headers['x-real-ip'];
  if (typeof real === 'string' && net.isIP(real.trim())) return real.trim();
  const xff = req.headers['x-forwarded-for'];
  const list = Array.isArray(xff) ? xff.join(',') : xff;
  const last = list?.split(',').at(-1)?.trim();
  return last && net.isIP(last) ? last : undefined;
}

/** The client address limits apply to. */
export function clientAddress(req: IncomingMessage, trustProxy: boolean): string {
  const peer = peerAddress(req);
  if (!trustProxy || !isPrivateAddress(peer)) return peer;
  return forwardedAddress(req) ?? peer;
}
