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

/**
 * The one line a plain HTTP request (curl, a browser tab) on a WebSocket path gets with its 426:
 * the gateway and the backend's legacy mode both send it, so nginx passes the same answer
 * whichever serves /ws/.
 */
export const UPGRADE_REQUIRED_HINT =
  'this is a WebSocket endpoint: connect with a WebSocket client offering the replyx.v1 subprotocol and your token as replyx.token.<JWT> (for example: npx wscat -c ws://HOST/ws/dialogs/123 -s replyx.v1 -s replyx.token.<JWT>); see docs/gateway.md#websocket-endpoints';

/** The HTTP answer to a non-upgrade request on a WebSocket path: 426, `Upgrade: websocket`, the hint as text. */
export function upgradeRequiredResponse(): { readonly status: 426; readonly headers: Readonly<Record<string, string>>; readonly body: string } {
  const body = `${UPGRADE_REQUIRED_HINT}\n`;
  return {
    status: 426,
    // RFC 9110 §15.5.22: a 426 names the protocol to switch to. No `Connection: Upgrade`: the
    // server keeps managing the connection, and a proxy keeping it alive must not see an upgrade.
    headers: { upgrade: 'websocket', 'content-type': 'text/plain; charset=utf-8', 'content-length': String(Buffer.byteLength(body)), 'cache-control': 'no-store' },
    body,
  };
}
