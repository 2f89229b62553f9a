import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { authorize, type AuthorizeDeps, type Authorized, type Refused } from '../access/authorize.js';
import { selectProtocol } from '../auth/credentials.js';
import { CloseCodes, type CloseCodeInfo } from '../close-codes.js';
import { LOG_TAG, type ConnectionKind } from '../connection-kinds.js';
import type { Admission } from '../limits/admission.js';
import { clientAddress, type TrustedProxies } from '../limits/client-ip.js';
import { sanitizeUrl } from '../log/logger.js';
import type { GatewayMetrics } from '../metrics/gateway-metrics.js';
import { matchEndpoint } from '../access/endpoints.js';
import { answerHandshake, refusal } from '../transport/handshake.js';
import { WebSocketTransport } from '../transport/web-socket.js';

// The WebSocket handshake behind node:http's 'upgrade' event (transport/handshake.ts answers it).
// Requests that are not WebSockets on a known path are refused before upgrading (HTTP status),
// as are malformed handshakes (after authorization, as when ws answered them); everything
// a client must act on (auth, origin, limits) is accepted and closed with a registry code,
// because a browser never sees the HTTP status of a failed handshake. A client that offers the
// `replyx.v1` subprotocol (with its token as `replyx.token.<JWT>`) gets `replyx.v1` back, never
// the token.

/** What the upgrade handler needs from the gateway. */
export interface UpgradeDeps {
  readonly maxPayloadBytes: number;
  readonly trustedProxies: TrustedProxies;
  readonly log: Logger;
  readonly metrics: GatewayMetrics;
  readonly admission: Admission;
  /** Tokens, access rows, revocations and the legacy widget switch. */
  readonly access: AuthorizeDeps;
  /** True once shutdown began: new upgrades get 503, late authorizations 4200. */
  isDraining(): boolean;
  /**
   * How many access changes the gateway has heard so far (access/access-changes.ts); read when
   * authorization begins and handed to accept, which re-checks a socket authorized across a change.
   */
  accessChanges(): number;
  /**
   * Takes over an upgraded, authorized socket and the bytes read past its request (the hub's
   * attach); `changesAtStart` is accessChanges() when its authorization began.
   */
  accept(socket: Socket, head: Buffer, auth: Authorized, ip: string, changesAtStart: number): void;
}

/** The 'upgrade' listener for node:http, and a close() for shutdown. */
export interface UpgradeHandler {
  handle(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  close(): void;
}

/** Builds the upgrade handler: limits, then authorization, then hand-over to `accept`. */
export function createUpgradeHandler(deps: UpgradeDeps): UpgradeHandler {
  const { log, metrics, admission } = deps;
  let closed = false;

  /** Writes the 101 answer; undefined when the handshake was refused with an HTTP status instead. */
  const upgrade = (req: IncomingMessage, socket: Duplex): Socket | undefined => {
    let answer = answerHandshake(req, selectProtocol);
    if (answer.ok) {
      // A client that already sent its FIN, or a socket already broken, is not upgraded.
      if (!socket.readable || !socket.writable) return void socket.destroy();
      if (closed) answer = refusal(503, STATUS_CODES[503]!);
    }
    if (!answer.ok) {
      socket.once('finish', destroySocket);
      socket.end(answer.response);
      return undefined;
    }
    socket.write(answer.response);
    return socket as Socket;
  };

  const refuseUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer, kind: ConnectionKind, close: CloseCodeInfo): void => {
    metrics.handshake(kind, close.code);
    // As for accepted sockets: the 101 response and the close frame leave in one write.
    socket.cork();
    const upgraded = upgrade(req, socket);
    if (upgraded) {
      metrics.closed(close.code);
      const ws = new RefusedWebSocket(upgraded, deps.maxPayloadBytes);
      ws.start(head);
      ws.startClose(close.code, close.reason);
    }
    socket.uncork();
  };

  // A shared listener, not a closure in `handle`: closures there share one context holding
  // `req`, `head` and the endpoint match, and a listener that lives as long as the socket would
  // keep the request, its headers (token included) and the bytes it was read from (~2 KiB) per
  // open WebSocket.
  function releaseAdmission(this: AdmittedSocket): void {
    const ip = this[ADMITTED_IP];
    if (ip === undefined) return;
    this[ADMITTED_IP] = undefined;
    admission.release(ip);
  }

  const handle = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on('error', destroySocket);
    const match = matchEndpoint(req.url);
    if (!match) return rejectHttp(socket, 404, 'Not Found');
    const ip = clientAddress(req, deps.trustedProxies);
    const refusal = admission.admit(ip);
    if (refusal) {
      log.warn({ ip, url: sanitizeUrl(req.url), reason: refusal }, `${LOG_TAG[match.kind]} connection refused: ${refusal}; closing with 4100`);
      return refuseUpgrade(req, socket, head, match.kind, CloseCodes.OVER_LIMIT);
    }
    // The slot is released when the TCP socket closes, whatever happened in between.
    (socket as AdmittedSocket)[ADMITTED_IP] = ip;
    socket.on('close', releaseAdmission);
    const changesAtStart = deps.accessChanges();
    authorize(match, req, deps.access).then(
      (result) => {
        if (socket.destroyed) return;
        if (!result.ok) {
          logRefusal(log, result, ip, sanitizeUrl(req.url));
          return refuseUpgrade(req, socket, head, match.kind, result.close);
        }
        if (result.via === 'query' || result.via === 'legacy') {
          // Deprecated ways in: counted, and noted at debug level (never with the token).
          metrics.deprecatedCredential(result.kind, result.via);
          log.debug({ ip, kind: result.kind, via: result.via }, `${LOG_TAG[result.kind]} deprecated credential: ${result.via === 'query' ? 'token in the query string (send it as the replyx.token.<JWT> subprotocol)' : 'widget without a session token (LEGACY_WIDGET_AUTH)'}`);
        }
        // A handshake that reached a draining gateway (sent before the proxy stopped routing here)
        // proves who it is like any other, then is told what a drained client is told: 4200,
        // reconnect soon with jitter. A 503 would read as a failed handshake, and clients back off
        // from those for up to 30 s; a 4200 before authorization would upgrade anyone.
        if (deps.isDraining()) return refuseUpgrade(req, socket, head, match.kind, CloseCodes.DRAINING);
        metrics.handshake(match.kind);
        // The 101 response and the `connected` frame (sent by accept) leave in one write, not two:
        // a syscall per handshake saved, the largest share of a connect left after auth.
        socket.cork();
        const upgraded = upgrade(req, socket);
        if (upgraded) deps.accept(upgraded, head, result, ip, changesAtStart);
        socket.uncork();
      },
      (err: unknown) => {
        log.error({ ip, url: sanitizeUrl(req.url), err: String(err) }, `${LOG_TAG[match.kind]} authorization failed (database); closing with 1011`);
        if (!socket.destroyed) refuseUpgrade(req, socket, head, match.kind, CloseCodes.INTERNAL_ERROR);
      },
    );
  };

  return {
    handle,
    close: () => {
      closed = true;
    },
  };
}

/** A WebSocket opened only to be closed with a registry code (a browser sees no HTTP status). */
class RefusedWebSocket extends WebSocketTransport {
  constructor(
    socket: Socket,
    readonly maxPayload: number,
  ) {
    super(socket);
  }

  // The close handshake is all that is awaited: what the client sends meanwhile is read and dropped.
  onMessage(): void {}
  protected onPingOrPong(): void {}
  protected onProtocolError(): void {}
  protected onClosed(): void {}
}

/** The address whose admission slot a socket holds until it closes. */
const ADMITTED_IP = Symbol('replyx.admittedIp');
type AdmittedSocket = Duplex & { [ADMITTED_IP]?: string };

function logRefusal(log: Logger, result: Refused, ip: string, url: string): void {
  const fields = { ip, url, kind: result.kind, dialog_id: result.dialogId, code: result.close.code, reason: result.detail };
  if (result.close.code === CloseCodes.DOMAIN_FORBIDDEN.code) {
    log.warn(
      { ...fields, assistant_id: result.assistantId, origin: result.origin },
      `WEBSOCKET_4003_ERROR ${LOG_TAG[result.kind]} domain forbidden: assistant_id=${result.assistantId ?? '?'} origin=${JSON.stringify(result.origin ?? '')}`,
    );
  } else {
    log.warn(fields, `${LOG_TAG[result.kind]} connection refused with ${result.close.code}: ${result.detail}`);
  }
}

/** Shared 'error' listener of upgrading sockets (no closure per connection). */
function destroySocket(this: Duplex): void {
  this.destroy();
}

function rejectHttp(socket: Duplex, status: number, text: string): void {
  if (!socket.writable) return void socket.destroy();
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}
