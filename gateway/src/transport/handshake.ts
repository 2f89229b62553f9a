import { createHash } from 'node:crypto';
import { STATUS_CODES, type IncomingHttpHeaders } from 'node:http';

// The opening handshake (RFC 6455 §4.2) as pure functions of the request: either the 101
// response to write, or the HTTP refusal. The refusals are the ones the gateway answered while
// it used `ws` (same statuses, bodies and headers), so clients and proxies see no change.
// permessage-deflate is never negotiated (the gateway always ran with it off: its zlib context
// costs ~300 KB per socket and chat frames are small), so Sec-WebSocket-Extensions is ignored.

/** The GUID every Sec-WebSocket-Accept is derived with (RFC 6455 §1.3). */
const HANDSHAKE_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
/** A base64 encoding of 16 bytes, as Sec-WebSocket-Key must be. */
const KEY_PATTERN = /^[+/0-9A-Za-z]{22}==$/;

/** The request fields a handshake depends on. */
export interface HandshakeRequest {
  readonly method?: string | undefined;
  readonly headers: IncomingHttpHeaders;
}

/** A handshake that cannot be completed: the HTTP answer instead of 101. */
export interface HandshakeRefusal {
  readonly ok: false;
  readonly status: number;
  readonly message: string;
  /** The whole response, ready to write before closing the socket. */
  readonly response: string;
}

/** A handshake that can be completed: the 101 response, with the subprotocol chosen. */
export interface HandshakeAccept {
  readonly ok: true;
  readonly response: string;
  readonly protocol: string | undefined;
}

/** Picks the subprotocol to answer from those offered (false: none). */
export type ProtocolSelector = (offered: ReadonlySet<string>) => string | false;

/** The Sec-WebSocket-Accept value for a Sec-WebSocket-Key. */
export function acceptKey(key: string): string {
  return createHash('sha1')
    .update(key + HANDSHAKE_GUID)
    .digest('base64');
}

/** Checks an upgrade request and builds the answer: 101 with the selected subprotocol, or a refusal. */
export function answerHandshake(req: HandshakeRequest, selectProtocol: ProtocolSelector): HandshakeAccept | HandshakeRefusal {
  const { headers } = req;
  if (req.method !== 'GET') return refusal(405, 'Invalid HTTP method');
  const upgrade = headers.upgrade;
  if (upgrade === undefined || upgrade.toLowerCase() !== 'websocket') return refusal(400, 'Invalid Upgrade header');
  const key = headers['sec-websocket-key'];
  if (key === undefined || !KEY_PATTERN.test(key)) return refusal(400, 'Missing or invalid Sec-WebSocket-Key header');
  // Version 8 (the last draft) frames as 13 does; ws accepted it, so the gateway still does.
  const version = Number(headers['sec-websocket-version']);
  if (version !== 13 && version !== 8) return refusal(400, 'Missing or invalid Sec-WebSocket-Version header', 'Sec-WebSocket-Version: 13, 8\r\n');
  let protocol: string | undefined;
  const offered = headers['sec-websocket-protocol'];
  if (offered !== undefined) {
    const protocols = parseProtocols(offered);
    if (protocols === undefined) return refusal(400, 'Invalid Sec-WebSocket-Protocol header');
    protocol = selectProtocol(protocols) || undefined;
  }
  const response = `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(key)}\r\n${protocol === undefined ? '' : `Sec-WebSocket-Protocol: ${protocol}\r\n`}\r\n`;
  return { ok: true, response, protocol };
}

/** The refusal for `status` with `message` as its body, as ws's abortHandshake wrote it. */
export function refusal(status: number, message: string, extraHeaders = ''): HandshakeRefusal {
  const response =
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nConnection: close\r\nContent-Type: text/html\r\nContent-Length: ${Buffer.byteLength(message)}\r\n` +
    `${extraHeaders}\r\n${message}`;
  return { ok: false, status, message, response };
}

/** RFC 7230 tchar: the characters a subprotocol token may hold. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * The subprotocols of a Sec-WebSocket-Protocol header (comma-separated tokens, optional spaces
 * or tabs around them), or undefined when it is malformed or names one twice.
 */
export function parseProtocols(header: string): Set<string> | undefined {
  const protocols = new Set<string>();
  for (const part of header.split(',')) {
    const token = part.replace(/^[ \t]+|[ \t]+$/g, '');
    if (!TOKEN.test(token) || protocols.has(token)) return undefined;
    protocols.add(token);
  }
  return protocols;
}
