import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { DestinationStream, Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { authorize, type Authorized, type Refused } from './access/authorize.js';
import { DialogAccessStore } from './access/dialog-access.js';
import { TokenVerifier } from './auth/tokens.js';
import type { Broker } from './broker/broker.js';
import { MemoryBroker } from './broker/memory-broker.js';
import { compareEventIds, type BrokerEvent } from './broker/protocol.js';
import type { PublishInput } from './broker/publisher.js';
import { RedisBroker } from './broker/redis-broker.js';
import { CloseCodes, type CloseCodeInfo } from './close-codes.js';
import type { GatewayConfig } from './config.js';
import { ClientConnection, type ConnectionOwner } from './connection/client-connection.js';
import { assertFrameWriterSupport, encodeTextFrame } from './connection/frame-writer.js';
import { HeartbeatWheel, heartbeatSlices } from './connection/heartbeat-wheel.js';
import { LOG_TAG, matchEndpoint } from './connection/endpoints.js';
import { createHttpHandler } from './http/routes.js';
import { DialogHub, type KindCounts } from './hub/dialog-hub.js';
import { Admission } from './limits/admission.js';
import { clientAddress } from './limits/client-ip.js';
import { createLogger, sanitizeUrl } from './log/logger.js';
import { GatewayMetrics } from './metrics/gateway-metrics.js';
import { RESYNC_FRAME, mergeReplay } from './resume/merge.js';

// The gateway: node:http for the HTTP endpoints and the upgrade, `ws` in noServer mode for the
// sockets, the hub for who is on which dialog, a broker for fan-out. Requests that are not
// WebSockets on a known path are refused before upgrading (HTTP status); everything a client
// must act on (auth, origin, limits) is accepted and closed with a registry code, because a
// browser never sees the HTTP status of a failed handshake.

/** Extra wiring for createGateway (tests pass a log stream or their own logger). */
export interface GatewayOptions {
  readonly logger?: Logger;
  /** Where JSON log lines go when no logger is given (default stdout). */
  readonly logStream?: DestinationStream;
  /** Register Node process metrics (default true; tests with several gateways turn it off). */
  readonly processMetrics?: boolean;
}

/** A running (or ready to run) gateway. */
export interface Gateway {
  /** Connects Redis (or the memory broker), binds config.host:config.port; resolves with the bound port. */
  listen(): Promise<number>;
  /** Drains (4200 spread over `windowMs`, default config.drainWindowMs), then closes everything. */
  drain(windowMs?: number): Promise<void>;
  /** Closes immediately: every connection gets 4200 at once, then everything stops. */
  close(): Promise<void>;
  /** The bound port (after listen). */
  readonly port: number;
  readonly instanceId: string;
  readonly hub: DialogHub<ClientConnection>;
  readonly broker: Broker;
  readonly metrics: GatewayMetrics;
  readonly logger: Logger;
  /** Publishes as POST /internal/publish does (stored and fanned out through the broker). */
  publish(input: PublishInput): Promise<string>;
  /** Open connections by kind. */
  connections(): KindCounts;
}

const CLOSE_SLOW = CloseCodes.SLOW_CONSUMER;
const PING_FRAME = Buffer.from('{"type":"ping"}');
const PONG_FRAME = Buffer.from('{"type":"pong"}');
const RESYNC = Buffer.from(RESYNC_FRAME);
/** Live events buffered per connection while its history replay runs; beyond it, 4101. */
export const MAX_PENDING_EVENTS = 10_000;
/** Client frames larger than this are never parsed (only pings are understood). */
const MAX_PARSED_FRAME = 256;

/** Creates a gateway from validated config; nothing listens until listen(). */
export function createGateway(config: GatewayConfig, options: GatewayOptions = {}): Gateway {
  assertFrameWriterSupport();
  const log = options.logger ?? createLogger(config.logLevel, options.logStream, { instance: config.instanceId });
  const hub = new DialogHub<ClientConnection>();
  const connections = new HeartbeatWheel<ClientConnection>(heartbeatSlices(config.heartbeatMs));
  // Expired handshake windows and cache rows are swept about ten times per heartbeat interval.
  const sweepEveryMs = Math.max(1, Math.floor(config.heartbeatMs / 10));
  let sweptAt = 0;
  const admission = new Admission(config);
  const tokens = new TokenVerifier(config);
  const access = new DialogAccessStore(config.databaseUrl, { cacheTtlMs: config.accessCacheTtlMs, cacheMax: config.accessCacheMax });
  const metrics = new GatewayMetrics({ connections: () => hub.counts(), dialogs: () => hub.dialogCount }, options.processMetrics ?? true);
  const startedAt = Date.now();
  const connectedFrame = Buffer.from(JSON.stringify({ type: 'connected', server: 'ws-gateway', instance: config.instanceId, heartbeat_ms: config.heartbeatMs }));
  let nextConnectionId = 1;
  let draining = false;
  let boundPort = 0;
  let heartbeat: NodeJS.Timeout | undefined;
  let closed: Promise<void> | undefined;

  const deliver = (event: BrokerEvent): void => {
    // Framed once per event; every recipient gets the same bytes (see frame-writer).
    const frame = encodeTextFrame(event.json);
    let sent = 0;
    for (const conn of hub.recipients(event.dialogId, event.audience)) {
      if (conn.pending) {
        if (conn.pending.length < MAX_PENDING_EVENTS) conn.pending.push(event);
        else conn.close(CLOSE_SLOW);
        continue;
      }
      if (conn.replayedUpTo !== undefined) {
        if (compareEventIds(event.id, conn.replayedUpTo) <= 0) continue;
        conn.replayedUpTo = undefined;
      }
      if (conn.sendEncoded(frame, config.sendBufferBytes, CLOSE_SLOW)) sent += 1;
    }
    metrics.delivered += sent;
    const ts = eventTs(event.json);
    if (ts !== undefined) metrics.observeLatency(Math.max(0, Date.now() - ts) / 1000);
    if (log.isLevelEnabled('info')) {
      const type = eventType(event.json);
      log.info({ dialog_id: event.dialogId, type, event_id: event.id, recipients: sent }, `Broadcasting message dialog=${event.dialogId} type=${type} recipients=${sent}`);
    }
  };

  const resync = (dialogId: number): void => {
    for (const conn of hub.recipients(dialogId)) if (!conn.pending) conn.send(RESYNC, config.sendBufferBytes, CLOSE_SLOW);
  };

  const broker: Broker =
    config.broker === 'memory'
      ? new MemoryBroker({ historyLength: config.historyLength, historyTtlS: config.historyTtlS }, { onEvent: deliver, onResync: resync })
      : new RedisBroker(
          { url: config.redisUrl!, historyLength: config.historyLength, historyTtlS: config.historyTtlS, logger: log.child({ component: 'broker' }) },
          { onEvent: deliver, onResync: resync },
        );

  const owner: ConnectionOwner = {
    onClientFrame(conn, data, isBinary) {
      if (conn.closeCode !== undefined) return;
      conn.alive = true;
      const now = Date.now();
      if (now - conn.framesWindowStart >= 1000) {
        conn.framesWindowStart = now;
        conn.frames = 0;
      }
      conn.frames += 1;
      if (conn.frames > config.clientFramesPerSecond) {
        log.warn({ conn: conn.id, dialog_id: conn.dialogId, kind: conn.kind, ip: conn.ip }, `${LOG_TAG[conn.kind]} client frame flood; closing with 4100`);
        conn.close(CloseCodes.OVER_LIMIT);
        return;
      }
      if (isBinary || data.length > MAX_PARSED_FRAME) return;
      if (data.equals(PING_FRAME) || isPing(data)) conn.send(PONG_FRAME, config.sendBufferBytes, CLOSE_SLOW);
    },
    onServerClose(conn, code) {
      metrics.closed(code);
      if (code === CLOSE_SLOW.code) {
        log.warn(
          { conn: conn.id, dialog_id: conn.dialogId, kind: conn.kind, ip: conn.ip, buffered: conn.ws.bufferedAmount, code },
          `${LOG_TAG[conn.kind]} slow consumer: more than ${config.sendBufferBytes} bytes unsent; closing with 4101`,
        );
      }
    },
    onConnectionClosed(conn, code) {
      connections.delete(conn);
      if (hub.leave(conn.dialogId, conn)) broker.unsubscribe(conn.dialogId);
      if (conn.closeCode === undefined) metrics.closed(code);
      conn.pending = null;
      log.info(
        { conn: conn.id, dialog_id: conn.dialogId, kind: conn.kind, code, duration_ms: Date.now() - conn.connectedAt },
        `${LOG_TAG[conn.kind]} disconnected dialog=${conn.dialogId} code=${code}`,
      );
    },
  };

  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: config.maxPayloadBytes,
    // Compression costs ~300 KB per socket in zlib contexts and CPU per frame; chat frames are small.
    perMessageDeflate: false,
    clientTracking: false,
  });

  const closeRefused = (ws: WebSocket, close: CloseCodeInfo): void => {
    metrics.closed(close.code);
    ws.close(close.code, close.reason);
  };

  const refuseUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer, close: CloseCodeInfo): void => {
    wss.handleUpgrade(req, socket, head, (ws) => closeRefused(ws, close));
  };

  const attach = async (ws: WebSocket, auth: Authorized, ip: string): Promise<void> => {
    const conn = new ClientConnection(ws, auth.kind, auth.dialogId, ip, nextConnectionId++, owner);
    connections.add(conn);
    conn.send(connectedFrame, config.sendBufferBytes, CLOSE_SLOW);
    log.info(
      { conn: conn.id, dialog_id: auth.dialogId, kind: auth.kind, ip, since: auth.since, ...auth.who },
      `${LOG_TAG[auth.kind]} connected dialog=${auth.dialogId}`,
    );
    // Buffer live events from the moment of joining, so nothing published during the replay is lost.
    if (auth.since !== undefined) conn.pending = [];
    hub.join(auth.dialogId, conn);
    // The first local join subscribes; later joins get the same pending-or-done subscription.
    const subscribed = broker.subscribe(auth.dialogId);
    if (auth.since === undefined) {
      subscribed.catch(() => undefined);
      return;
    }
    try {
      // History is read only after the subscription is live: an event is then either in the
      // history read or arrives live (or both, deduplicated by id) — never neither.
      await subscribed;
      const result = await broker.history(auth.dialogId, auth.since);
      if (!conn.pending) return; // closed meanwhile
      const buffered = conn.pending;
      conn.pending = null;
      let replay: readonly BrokerEvent[];
      if (result.status === 'gap') {
        conn.send(RESYNC, config.sendBufferBytes, CLOSE_SLOW);
        replay = mergeReplay([], buffered, undefined);
        conn.replayedUpTo = replay.at(-1)?.id;
      } else {
        // History holds every audience; buffered live events were already narrowed by the hub.
        const mine = result.events.filter((e) => e.audience.length === 0 || e.audience.includes(conn.kind));
        replay = mergeReplay(mine, buffered, auth.since);
        conn.replayedUpTo = replay.at(-1)?.id ?? auth.since;
      }
      for (const event of replay) if (!conn.send(Buffer.from(event.json), config.sendBufferBytes, CLOSE_SLOW)) break;
      metrics.delivered += replay.length;
    } catch (err) {
      log.error({ conn: conn.id, dialog_id: auth.dialogId, err: String(err) }, `${LOG_TAG[auth.kind]} history replay failed; closing with 1011`);
      conn.pending = null;
      conn.close(CloseCodes.INTERNAL_ERROR);
    }
  };

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on('error', () => socket.destroy());
    const url = sanitizeUrl(req.url);
    if (draining) return rejectHttp(socket, 503, 'Service Unavailable');
    const match = matchEndpoint(req.url);
    if (!match) return rejectHttp(socket, 404, 'Not Found');
    const ip = clientAddress(req, config.trustProxy);
    const refusal = admission.admit(ip);
    if (refusal) {
      log.warn({ ip, url, reason: refusal }, `${LOG_TAG[match.kind]} connection refused: ${refusal}; closing with 4100`);
      return refuseUpgrade(req, socket, head, CloseCodes.OVER_LIMIT);
    }
    // The slot is released when the TCP socket closes, whatever happened in between.
    socket.once('close', () => admission.release(ip));
    authorize(match, req, tokens, (id) => access.lookup(id)).then(
      (result) => {
        if (socket.destroyed) return;
        if (!result.ok) {
          logRefusal(log, result, ip, url);
          return refuseUpgrade(req, socket, head, result.close);
        }
        if (draining) return refuseUpgrade(req, socket, head, CloseCodes.DRAINING);
        wss.handleUpgrade(req, socket, head, (ws) => void attach(ws, result, ip));
      },
      (err: unknown) => {
        log.error({ ip, url, err: String(err) }, `${LOG_TAG[match.kind]} authorization failed (database); closing with 1011`);
        if (!socket.destroyed) refuseUpgrade(req, socket, head, CloseCodes.INTERNAL_ERROR);
      },
    );
  };

  const health = async () => {
    const [db] = await Promise.all([access.healthy()]);
    const brokerUp = broker.isReady();
    const ok = db && brokerUp && !draining;
    return {
      ok,
      body: {
        status: ok ? 'ok' : draining ? 'draining' : 'unavailable',
        instance: config.instanceId,
        broker: config.broker,
        redis: config.broker === 'memory' ? 'not-used' : brokerUp ? 'up' : 'down',
        db: db ? 'up' : 'down',
        connections: hub.size,
      },
    };
  };

  const status = () => {
    const counts = hub.counts();
    return {
      instance: config.instanceId,
      pid: process.pid,
      workers: 1,
      uptime_s: Math.round((Date.now() - startedAt) / 1000),
      broker: config.broker,
      broker_ready: broker.isReady(),
      draining,
      connections: { ...counts, total: hub.size },
      dialogs: hub.dialogCount,
      subscribed_dialogs: broker.subscribedCount,
    };
  };

  const sync = async (dialogId: number) => {
    const counts = hub.dialogCounts(dialogId);
    let lastEventId: string | null = null;
    try {
      lastEventId = (await broker.lastEventId(dialogId)) ?? null;
    } catch {
      lastEventId = null;
    }
    return {
      instance: config.instanceId,
      dialog_id: dialogId,
      attached: { ...counts, total: counts.admin + counts.widget + counts.site },
      subscribed: hub.has(dialogId),
      last_event_id: lastEventId,
    };
  };

  const publish = (input: PublishInput): Promise<string> => broker.publish(input);

  const handler = createHttpHandler({ config, metrics, log, health, status, sync, publish, brokerReady: () => broker.isReady() });
  const server = http.createServer((req: IncomingMessage, res: ServerResponse) => void handler(req, res));
  server.on('upgrade', onUpgrade);
  server.on('clientError', (_err, socket) => socket.destroy());

  // One shared timer; each tick pings one slice of the connections (see HeartbeatWheel).
  const tick = (): void => {
    for (const conn of connections.nextSlice()) {
      if (!conn.alive) {
        log.info({ conn: conn.id, dialog_id: conn.dialogId, kind: conn.kind }, `${LOG_TAG[conn.kind]} cleanup: dead connection terminated (no pong)`);
        conn.closeCode = 1006;
        metrics.closed(1006);
        conn.ws.terminate();
        continue;
      }
      conn.alive = false;
      conn.ws.ping();
    }
    const now = Date.now();
    if (now - sweptAt < sweepEveryMs) return;
    sweptAt = now;
    admission.sweep(now);
    access.sweep(now);
    if (broker instanceof MemoryBroker) broker.sweep(now);
  };

  const shutdown = async (windowMs: number): Promise<void> => {
    draining = true;
    if (heartbeat) clearInterval(heartbeat);
    server.close();
    server.closeIdleConnections();
    const victims = [...connections];
    // Random order, evenly spread over the window: clients reconnect at different moments.
    for (let i = victims.length - 1; i > 0; i -= 1) {
      const j = Math.floor(Math.random() * (i + 1));
      [victims[i], victims[j]] = [victims[j]!, victims[i]!];
    }
    log.info({ connections: victims.length, window_ms: windowMs }, 'draining: closing connections with 4200');
    let closedCount = 0;
    const start = Date.now();
    while (closedCount < victims.length) {
      const elapsed = Date.now() - start;
      const target = windowMs <= 0 ? victims.length : Math.min(victims.length, Math.ceil((victims.length * elapsed) / windowMs));
      for (; closedCount < target; closedCount += 1) victims[closedCount]!.close(CloseCodes.DRAINING);
      if (closedCount < victims.length) await sleep(Math.min(50, Math.max(5, windowMs / 100)));
    }
    // Peers that never answer the close frame are cut after a grace period.
    const deadline = Date.now() + 2000;
    while (connections.size > 0 && Date.now() < deadline) await sleep(20);
    for (const conn of connections) conn.ws.terminate();
    await Promise.allSettled([broker.close(), access.close(), new Promise<void>((resolve) => server.close(() => resolve()))]);
    wss.close();
    log.info({ uptime_s: Math.round((Date.now() - startedAt) / 1000) }, 'gateway stopped');
  };

  return {
    async listen() {
      await tokens.ready();
      await broker.start();
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(config.port, config.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      boundPort = (server.address() as AddressInfo).port;
      heartbeat = setInterval(tick, Math.max(1, Math.floor(config.heartbeatMs / connections.slices)));
      heartbeat.unref();
      log.info({ port: boundPort, host: config.host, broker: config.broker, algorithm: tokens.algorithm, heartbeat_ms: config.heartbeatMs }, `ws-gateway listening on ${config.host}:${boundPort}`);
      return boundPort;
    },
    drain(windowMs = config.drainWindowMs) {
      closed ??= shutdown(windowMs);
      return closed;
    },
    close() {
      closed ??= shutdown(0);
      return closed;
    },
    get port() {
      return boundPort;
    },
    instanceId: config.instanceId,
    hub,
    broker,
    metrics,
    logger: log,
    publish,
    connections: () => hub.counts(),
  };
}

function logRefusal(log: Logger, result: Refused, ip: string, url: string): void {
  const fields = { ip, url, kind: result.kind, dialog_id: result.dialogId, code: result.close.code, reason: result.detail };
  if (result.close.code === 4003) {
    log.warn(
      { ...fields, assistant_id: result.assistantId, origin: result.origin },
      `WEBSOCKET_4003_ERROR ${LOG_TAG[result.kind]} domain forbidden: assistant_id=${result.assistantId ?? '?'} origin=${JSON.stringify(result.origin ?? '')}`,
    );
  } else {
    log.warn(fields, `${LOG_TAG[result.kind]} connection refused with ${result.close.code}: ${result.detail}`);
  }
}

function rejectHttp(socket: Duplex, status: number, text: string): void {
  if (!socket.writable) return void socket.destroy();
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}

function isPing(data: Buffer): boolean {
  try {
    const parsed = JSON.parse(data.toString('utf8')) as unknown;
    return typeof parsed === 'object' && parsed !== null && (parsed as { type?: unknown }).type === 'ping';
  } catch {
    return false;
  }
}

/** The `ts` of an event frame (the broker's JSON ends with `,"ts":<ms>}`), read without parsing. */
export function eventTs(json: string): number | undefined {
  const at = json.lastIndexOf('"ts":');
  if (at < 0) return undefined;
  const n = Number.parseInt(json.slice(at + 5), 10);
  return Number.isFinite(n) ? n : undefined;
}

const TYPE_PREFIX = /^\{"id":"[^"]*","type":("(?:[^"\\]|\\.)*")/;

/** The `type` of an event frame, read from its fixed prefix without parsing the data. */
export function eventType(json: string): string {
  const m = TYPE_PREFIX.exec(json);
  if (!m) return '?';
  try {
    return JSON.parse(m[1]!) as string;
  } catch {
    return '?';
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
