import { optionError } from './errors.js';

// Where a client connects and how it presents its token. The token never enters the URL: it
// travels as the second offered subprotocol, and the server answers with the first only.

/** The three kinds of client the gateway serves. */
export type ClientKind = 'admin' | 'widget' | 'site';

/** The WebSocket path prefix of each kind (the seed's paths). */
export const DIALOG_PATHS: Readonly<Record<ClientKind, string>> = {
  admin: '/ws/dialogs/',
  widget: '/ws/widget/dialogs/',
  site: '/ws/site/dialogs/',
};

/** The subprotocol the gateway answers with. */
export const PROTOCOL = 'replyx.v1';

/** Prefix of the subprotocol that carries the token: `replyx.token.<JWT>`. */
export const TOKEN_PROTOCOL_PREFIX = 'replyx.token.';

/**
 * The WebSocket URL of a dialog: `baseUrl` (`ws(s)://host[:port][/prefix]`, or `http(s)://`,
 * which maps to `ws(s)://`) plus the kind's path, and `since` when resuming.
 */
export function dialogUrl(baseUrl: string, kind: ClientKind, dialogId: number, since?: string): string {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    throw optionError('url', 'an absolute ws://, wss://, http:// or https:// URL such as wss://chat.example.com', baseUrl);
  }
  url.protocol = url.protocol.replace(/^http/, 'ws');
  if (!/^wss?:$/.test(url.protocol)) throw optionError('url', 'a ws://, wss://, http:// or https:// URL', baseUrl);
  if (url.search || url.hash || url.username) throw optionError('url', 'a base URL without credentials, query or fragment (tokens never travel in URLs)', baseUrl);
  if (!Object.hasOwn(DIALOG_PATHS, kind)) throw optionError('kind', '"admin", "widget" or "site"', kind);
  if (!Number.isSafeInteger(dialogId) || dialogId < 1) throw optionError('dialogId', 'a positive whole number', dialogId);
  url.pathname = url.pathname.replace(/\/+$/, '') + DIALOG_PATHS[kind] + dialogId;
  if (since !== undefined) url.searchParams.set('since', since);
  return url.href;
}

/** The subprotocols offered for `token`: the protocol name, then the token. */
export function subprotocols(token: string): string[] {
  return [PROTOCOL, TOKEN_PROTOCOL_PREFIX + token];
}
