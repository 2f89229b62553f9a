import type { IncomingHttpHeaders } from 'node:http';

// Where a client's token travels. Tokens stay out of URLs (URLs end up in logs): a WebSocket
// client offers `Sec-WebSocket-Protocol: replyx.v1, replyx.token.<JWT>` and the server answers
// `replyx.v1` only, never echoing the token; an HTTP client sends `Authorization: Bearer <JWT>`.
// The seed's query parameters (`?token=`, `?site_token=`) are still read, as deprecated.
// Shared by the gateway and the reference backend (API and legacy /ws/ mode).

/** The subprotocol the server answers with. */
export const REPLYX_PROTOCOL = 'replyx.v1';
/** The prefix of the subprotocol that carries a token. */
export const TOKEN_PROTOCOL_PREFIX = 'replyx.token.';

/** How a credential reached the server (`query` is deprecated). */
export type CredentialSource = 'protocol' | 'bearer' | 'query';

/** A token and where it came from. */
export interface PresentedToken {
  readonly token: string;
  readonly source: CredentialSource;
}

/** The token offered as `replyx.token.<JWT>` in Sec-WebSocket-Protocol, if any. */
export function tokenFromProtocols(header: string | string[] | undefined): string | undefined {
  const value = Array.isArray(header) ? header.join(',') : header;
  if (!value) return undefined;
  for (const part of value.split(',')) {
    const p = part.trim();
    if (p.startsWith(TOKEN_PROTOCOL_PREFIX) && p.length > TOKEN_PROTOCOL_PREFIX.length) return p.slice(TOKEN_PROTOCOL_PREFIX.length);
  }
  return undefined;
}

/** The token of an `Authorization: Bearer <token>` header, if any. */
export function bearerToken(header: string | undefined): string | undefined {
  return header ? /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1] : undefined;
}

/**
 * The token a request presents: the subprotocol first, then `Authorization: Bearer`, then the
 * deprecated query parameter `queryParam` (none when undefined).
 */
export function presentedToken(headers: IncomingHttpHeaders, params: URLSearchParams, queryParam: string | undefined): PresentedToken | undefined {
  const fromProtocol = tokenFromProtocols(headers['sec-websocket-protocol']);
  if (fromProtocol) return { token: fromProtocol, source: 'protocol' };
  const fromBearer = bearerToken(headers.authorization);
  if (fromBearer) return { token: fromBearer, source: 'bearer' };
  const fromQuery = queryParam ? params.get(queryParam) : null;
  return fromQuery ? { token: fromQuery, source: 'query' } : undefined;
}

/** ws's `handleProtocols`: answer `replyx.v1` when offered, else no subprotocol (never the token). */
export function selectProtocol(protocols: ReadonlySet<string>): string | false {
  return protocols.has(REPLYX_PROTOCOL) ? REPLYX_PROTOCOL : false;
}

/** The subprotocols a client offers to send `token` (for clients and tests). */
export function tokenProtocols(token: string): string[] {
  return [REPLYX_PROTOCOL, `${TOKEN_PROTOCOL_PREFIX}${token}`];
}
