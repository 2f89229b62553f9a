import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { presentedToken, selectProtocol } from '@replyx/gateway/auth/credentials';
import { CloseCodes } from '@replyx/gateway/close-codes';
import { LOG_TAG, type ConnectionKind, type KindCounts } from '@replyx/gateway/connection-kinds';
import { readHistory } from '@replyx/gateway/broker/history';
import { mergeReplay } from '@replyx/gateway/broker/merge-replay';
import { eventIdProblem, RESYNC_FRAME, SINCE_AHEAD_REASON, type BrokerEvent } from '@replyx/gateway/broker/protocol';
import { DialogHub } from '@replyx/gateway/hub/dialog-hub';
import { authorise, callerFromToken, denied, legacyWidgetCaller, type BackendCredentials, type Caller, type Denial } from './access.js';
import { routedToBackendByPlan, WS_ROUTE_HEADER } from './legacy-route.js';

// Legacy mode: the pre-migration design, kept on purpose. Each worker serves /ws/ itself and
// keeps its sockets in its OWN in-memory hub, with no fan-out between workers: a message
// POSTed to worker K reaches only the sockets that happen to live on worker K. With several
// workers this is the seed's desync ("every other time"); with one worker it is not.
// Credentials are the gateway's: tokens in the `replyx.token.<JWT>` subprotocol (answered with
// `replyx.v1`) or the seed's query parameters, widget session tokens, the credential-less widget
// only with LEGACY_WIDGET_AUTH; a socket is closed with 4001 "token expired" when its token
// expires. (Revocation while open is the gateway's job; this mode is a rollback state.)
// Resume is the gateway's: `since=` is read from the same Redis history with the same event ids
// and merged with live events by the gateway's own code, so a client moved between the gateway
// and this mode (rollback, undo) resumes without a gap, or gets `resync` where continuity cannot
// be proven (history trimmed or lost, or Redis unreachable during the read).
// Only a route the stack plan renders reaches this mode (legacy-route.ts): a handshake without
// nginx's mark is closed with 4102 before anything else, and clients back off until the route
// is repaired.

/** Close codes shared with the gateway's contract. */
export const CLOSE = { UNAUTHORIZED: 4001, ORIGIN_FORBIDDEN: 4003, DIALOG_NOT_FOUND: 4004, BAD_REQUEST: 4009 } as const;

/** At most one log line per this interval about refused unrouted handshakes (a misrouted fleet retries by the thousand). */
export const NOT_ROUTED_LOG_INTERVAL_MS = 10_000;

/** setTimeout's longest delay; longer token lifetimes re-arm the timer. */
const MAX_TIMER_MS = 2 ** 31 - 1;

const PATHS: { kind: ConnectionKind; pattern: RegExp }[] = [
  { kind: 'admin', pattern: /^\/ws\/dialogs\/(\d{1,15})\/?$/ },
  { kind: 'widget', pattern: /^\/ws\/widget\/dialogs\/(\d{1,15})\/?$/ },
  { kind: 'site', pattern: /^\/ws\/site\/dialogs\/(\d{1,15})\/?$/ },
];

/** Which legacy endpoint a path is, or undefined for other paths. */
export function matchLegacyPath(pathname: string): { kind: ConnectionKind; dialogId: number } | undefined {
  for (const p of PATHS) {
    const m = p.pattern.exec(pathname);
    if (m) return { kind: p.kind, dialogId: Number(m[1]) };
  }
  return undefined;
}

interface Member {
  readonly kind: ConnectionKind;
  readonly socket: WebSocket;
  /** Non-null while the `since` replay runs: live events wait here. */
  pending: BrokerEvent[] | null;
}

/** What legacy mode needs from the worker. */
export interface LegacyDeps {
  readonly db: pg.Pool;
  readonly credentials: BackendCredentials;
  readonly log: Logger;
  /** Where the dialogs' history streams are (the publisher's connection). */
  readonly redis: Redis;
  /** Events a resume replays at most (HISTORY_LENGTH). */
  readonly historyLength: number;
  readonly heartbeatMs?: number;
  readonly maxPayloadBytes?: number;
  /** Called for each handshake refused because the stack plan does not route /ws/ here (counted on /metrics). */
  readonly onNotRouted?: () => void;
}

/** This worker's legacy /ws/ endpoints. */
export interface LegacyWebSockets {
  /** Sends an event frame to this worker's sockets on the dialog (and no one else's); resuming sockets get it after their replay. */
  deliver(dialogId: number, eventId: string, frame: string): number;
  /** Connections on this worker. */
  readonly size: number;
  /** Connections on this worker by type. */
  counts(): KindCounts;
  /** Closes every socket (1001) and stops the heartbeat. */
  close(): void;
}

/** The deprecated query parameter each kind's token may still arrive in. */
const QUERY_TOKEN: Readonly<Record<ConnectionKind, string | undefined>> = { admin: 'token', site: 'site_token', widget: undefined };

async function callerFor(kind: ConnectionKind, url: URL, req: IncomingMessage, creds: BackendCredentials, log: Logger): Promise<Caller | Denial | 'bad-request'> {
  const q = url.searchParams;
  const origin = typeof req.headers.origin === 'string' ? req.headers.origin : undefined;
  const presented = presentedToken(req.headers, q, QUERY_TOKEN[kind]);
  if (presented?.source === 'query') log.debug({ kind }, `${LOG_TAG[kind]} deprecated credential: token in the query string (send it as the replyx.token.<JWT> subprotocol)`);
  if (kind === 'widget' && !presented && creds.legacyWidgetAuth && q.has('assistant_id')) {
    const assistantId = Number(q.get('assistant_id'));
    if (!/^\d{1,15}$/.test(q.get('assistant_id') ?? '') || assistantId < 1) return 'bad-request';
    return legacyWidgetCaller(assistantId, q.get('parent_origin') ?? undefined, origin, creds.assistantDomains);
  }
  return callerFromToken(creds, kind, presented?.token, kind === 'site' ? origin : undefined);
}

/** Closes `ws` with 4001 "token expired" once `expiresAt` (epoch seconds) has passed. */
function closeAtExpiry(ws: WebSocket, expiresAt: number): NodeJS.Timeout {
  const timer = setTimeout(() => {
    if (Date.now() < expiresAt * 1000) return void closeAtExpiry(ws, expiresAt);
    ws.close(CLOSE.UNAUTHORIZED, 'token expired');
  }, Math.min(MAX_TIMER_MS, Math.max(0, expiresAt * 1000 - Date.now())));
  timer.unref();
  return timer;
}

/** Serves the seed's /ws/ paths on `server` from this worker's own in-memory hub. */
export function attachLegacyWebSockets(server: Server, deps: LegacyDeps): LegacyWebSockets {
  const hub = new DialogHub<Member>();
  const wss = new WebSocketServer({ noServer: true, maxPayload: deps.maxPayloadBytes ?? 64 * 1024, handleProtocols: selectProtocol });
  const alive = new WeakSet<WebSocket>();
  let notRoutedLoggedAt = Number.NEGATIVE_INFINITY;
  let notRoutedUnlogged = 0;

  // Counted every time, logged at most every NOT_ROUTED_LOG_INTERVAL_MS with the count since.
  const noteNotRouted = (kind: ConnectionKind): void => {
    deps.onNotRouted?.();
    notRoutedUnlogged += 1;
    const now = Date.now();
    if (now - notRoutedLoggedAt < NOT_ROUTED_LOG_INTERVAL_MS) return;
    deps.log.warn(
      { closeCode: CloseCodes.NOT_ROUTED.code, refused: notRoutedUnlogged },
      `${LOG_TAG[kind]} legacy /ws/ handshake refused with ${CloseCodes.NOT_ROUTED.code} (${notRoutedUnlogged} since the last such line): nginx sent /ws/ to the backend without the ${WS_ROUTE_HEADER} header it sets only when the stack plan routes /ws/ here (wsRoute: backend): nginx.conf was edited by hand (or a client bypassed nginx); clients retry with backoff. Run npm run check, then npm run stack -- apply (runbooks/ws-desync.md)`,
    );
    notRoutedLoggedAt = now;
    notRoutedUnlogged = 0;
  };

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? '/', 'http://backend.invalid');
    const route = matchLegacyPath(url.pathname);
    if (!route) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    if (!routedToBackendByPlan(req.headers)) {
      noteNotRouted(route.kind);
      // Upgraded, then closed: a browser sees a close code and its reason, never a failed
      // handshake's HTTP status. The 4100 range makes contract clients back off, not give up.
      wss.handleUpgrade(req, socket, head, (ws) => ws.close(CloseCodes.NOT_ROUTED.code, CloseCodes.NOT_ROUTED.reason));
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      void accept(ws, req, url, route.kind, route.dialogId);
    });
  });

  async function accept(ws: WebSocket, req: IncomingMessage, url: URL, kind: ConnectionKind, dialogId: number): Promise<void> {
    // Parameters before credentials, as the gateway checks them.
    const since = url.searchParams.get('since') ?? undefined;
    const sinceProblem = since === undefined ? undefined : eventIdProblem(since);
    if (sinceProblem) {
      deps.log.warn({ dialogId, since }, `${LOG_TAG[kind]} connection refused: ${sinceProblem}`);
      ws.close(CLOSE.BAD_REQUEST, sinceProblem);
      return;
    }
    let caller: Caller | Denial | 'bad-request';
    try {
      caller = await callerFor(kind, url, req, deps.credentials, deps.log);
      if (caller !== 'bad-request' && !denied(caller)) caller = authorise(caller, dialogId, await deps.credentials.dialogAccess(dialogId)) ?? caller;
    } catch (err) {
      deps.log.error({ err, dialogId }, `${LOG_TAG[kind]} legacy handshake failed`);
      ws.close(1011, 'internal error');
      return;
    }
    if (caller === 'bad-request') {
      deps.log.warn({ dialogId }, `${LOG_TAG[kind]} connection refused: assistant_id must be a positive integer`);
      ws.close(CLOSE.BAD_REQUEST, 'bad request');
      return;
    }
    if (denied(caller)) {
      const code = caller.code === 'UNAUTHORIZED' ? CLOSE.UNAUTHORIZED : caller.code === 'ORIGIN_FORBIDDEN' ? CLOSE.ORIGIN_FORBIDDEN : CLOSE.DIALOG_NOT_FOUND;
      const words = code === CLOSE.ORIGIN_FORBIDDEN ? `WEBSOCKET_4003_ERROR ${LOG_TAG[kind]} domain forbidden` : `${LOG_TAG[kind]} connection refused`;
      deps.log.warn({ dialogId, closeCode: code, reason: caller.reason }, `${words}: ${caller.reason}`);
      ws.close(code, caller.reason.slice(0, 120));
      return;
    }
    const member: Member = { kind, socket: ws, pending: since === undefined ? null : [] };
    const expiry = caller.expiresAt > 0 ? closeAtExpiry(ws, caller.expiresAt) : undefined;
    hub.join(dialogId, member);
    alive.add(ws);
    deps.log.info({ dialogId, worker: process.pid, connections: hub.size }, `${LOG_TAG[kind]} legacy connection on worker ${process.pid} to dialog ${dialogId}`);
    ws.send(JSON.stringify({ type: 'connected', server: 'backend', instance: `backend-${process.pid}`, worker: process.pid, heartbeat_ms: deps.heartbeatMs ?? 25_000 }));
    ws.on('pong', () => alive.add(ws));
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      try {
        const msg = JSON.parse(data.toString()) as { type?: unknown };
        if (msg.type === 'ping') ws.send('{"type":"pong"}');
      } catch {
        // Clients may send anything; the legacy design ignored what it did not understand.
      }
    });
    ws.on('close', () => {
      clearTimeout(expiry);
      hub.leave(dialogId, member);
      deps.log.info({ dialogId }, `${LOG_TAG[kind]} legacy connection closed`);
    });
    ws.on('error', () => ws.terminate());
    if (since !== undefined) await resume(member, dialogId, since);
  }

  // Joined first (live events buffer in member.pending), then the history read: every event is
  // in the read, buffered, or both (deduplicated by id) — never neither.
  async function resume(member: Member, dialogId: number, since: string): Promise<void> {
    const ws = member.socket;
    let result: Awaited<ReturnType<typeof readHistory>> | undefined;
    try {
      result = await readHistory(deps.redis, dialogId, since, deps.historyLength);
    } catch (err) {
      deps.log.warn({ dialogId, since, err: String((err as Error).message ?? err) }, `${LOG_TAG[member.kind]} history unreadable; sending resync`);
    }
    const buffered = member.pending ?? [];
    member.pending = null;
    if (ws.readyState !== ws.OPEN) return;
    if (result?.status === 'ahead') {
      deps.log.warn({ dialogId, since, newest: result.newest }, `${LOG_TAG[member.kind]} since is ahead of the dialog's newest event; closing with 4009`);
      ws.close(CLOSE.BAD_REQUEST, SINCE_AHEAD_REASON);
      return;
    }
    let replay: BrokerEvent[];
    if (result?.status !== 'ok') {
      ws.send(RESYNC_FRAME);
      replay = mergeReplay([], buffered, undefined);
    } else {
      const mine = result.events.filter((e) => e.audience.length === 0 || e.audience.includes(member.kind));
      replay = mergeReplay(mine, buffered, since);
    }
    for (const event of replay) ws.send(event.json);
  }

  // Protocol pings find dead peers; a socket that missed one round is dropped.
  const heartbeat = setInterval(() => {
    for (const ws of wss.clients) {
      if (!alive.has(ws)) {
        ws.terminate();
        continue;
      }
      alive.delete(ws);
      ws.ping();
    }
  }, deps.heartbeatMs ?? 25_000);
  heartbeat.unref();

  return {
    deliver(dialogId, eventId, frame) {
      let n = 0;
      for (const m of hub.recipients(dialogId)) {
        if (m.pending) {
          m.pending.push({ id: eventId, dialogId, audience: [], json: frame });
          n += 1;
        } else if (m.socket.readyState === m.socket.OPEN) {
          m.socket.send(frame);
          n += 1;
        }
      }
      return n;
    },
    get size() {
      return hub.size;
    },
    counts: () => hub.counts(),
    close() {
      clearInterval(heartbeat);
      for (const ws of wss.clients) ws.close(1001, 'backend shutting down');
      wss.close();
    },
  };
}
