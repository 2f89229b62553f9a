import type { ConnectionKind } from '../connection-kinds.js';

// The seed's three WebSocket paths (which kind of client, which dialog). Parsing is pure so it is
// tested without sockets.

/** A request matched to one of the WebSocket endpoints. */
export interface EndpointMatch {
  readonly kind: ConnectionKind;
  /** The raw dialog id segment; validated by the authorizer (bad ids close with 4009). */
  readonly dialogSegment: string;
  readonly params: URLSearchParams;
}

const PATH = /^\/ws\/(?:(widget|site)\/)?dialogs\/([^/]+)\/?$/;

/** Matches a request URL to an endpoint; undefined for any other path (HTTP 404). */
export function matchEndpoint(rawUrl: string | undefined): EndpointMatch | undefined {
  if (!rawUrl) return undefined;
  const q = rawUrl.indexOf('?');
  const path = q < 0 ? rawUrl : rawUrl.slice(0, q);
  const m = PATH.exec(path);
  if (!m) return undefined;
  const kind: ConnectionKind = m[1] === 'widget' ? 'widget' : m[1] === 'site' ? 'site' : 'admin';
  return { kind, dialogSegment: m[2]!, params: new URLSearchParams(q < 0 ? '' : rawUrl.slice(q + 1)) };
}
