import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { DestinationStream, Logger } from 'pino';
import { AccessChangeListener, applyAccessChange, type AccessChange } from './access/access-changes.js';
import { DialogAccessStore } from './access/dialog-access.js';
import { RevokedSiteTokens } from './access/revoked-site-tokens.js';
import { TokenVerifier } from './auth/tokens.js';
import type { Broker, BrokerHandlers } from './broker/broker.js';
import { MemoryBroker } from './broker/memory-broker.js';
import type { PublishInput } from './broker/publisher.js';
import { RedisBroker } from './broker/redis-broker.js';
import type { GatewayConfig } from './config.js';
import type { KindCounts } from './connection-kinds.js';
import type { ClientConnection } from './connection/client-connection.js';
import { createUpgradeHandler } from './http/upgrade.js';
import { createHttpHandler } from './http/routes.js';
import { DeliveryHub } from './hub/delivery-hub.js';
import type { DialogHub } from './hub/dialog-hub.js';
import { Reauthorizer } from './hub/reauthorizer.js';
import { Admission } from './limits/admission.js';
import { connectionCapacity, OPEN_FILE_WARNING_CODE, openFileWarning, readOpenFileLimits, type OpenFileLimits } from './limits/open-files.js';
import { createLogger } from './log/logger.js';
import { GatewayMetrics } from './metrics/gateway-metrics.js';

// The node (as in centrifuge's node / hub / broker): wires config, the broker, the hub, the HTTP
// routes, the upgrade handler and shutdown. Delivery, replay and drain live in the hub
// (hub/delivery-hub.ts), per-connection accounting in the connection (connection/), the
// handshake in http/upgrade.ts, the HTTP endpoints in http/routes.ts.

/** Extra wiring for createGateway (tests pass a log stream or their own logger). */
export interface GatewayOptions {
  readonly logger?: Logger;
  /** Where JSON log lines go when no logger is given (default stdout). */
  readonly logStream?: DestinationStream;
  /** Register Node process metrics (default true; tests with several gateways turn it off). */
  readonly processMetrics?: boolean;
  /** The process's open-file limits (default: read from /proc/self/limits; none off Linux). */
  readonly openFileLimits?: OpenFileLimits;
}

/** A running (or ready to run) gateway. */
export interface Gateway {
  /** Connects Redis (or the memory broker), binds config.host:config.port; resolves with the bound port. */
  listen(): Promise<number>;
  /** Drains (4200 spread over `windowMs`, default config.drainWindowMs), then closes everything. */
  drain(windowMs?: number): Promise<void>;
  /**
   * Closes the listener, so a successor can bind the port, and keeps serving the WebSockets it
   * holds until drain() or close(). Resolves once the port is free.
   */
  handOver(): Promise<void>;
  /** Closes immediately: every connection gets 4200 at once, then everything stops. */
  close(): Promise<void>;
  /** The bound port (after listen). */
  readonly port: number;
  readonly instanceId: string;
  /** Who is on which dialog (the delivery hub's membership map). */
  readonly hub: DialogHub<ClientConnection>;
  readonly broker: Broker;
  readonly metrics: GatewayMetrics;
  readonly logger: Logger;
  /** Publishes as POST /internal/publish does (stored and fanned out through the broker). */
  publish(input: PublishInput): Promise<string>;
  /** Open connections by kind. */
  connections(): KindCounts;
}

/** Creates the configured broker; its events go to `handlers` (the hub). */
function createBroker(config: GatewayConfig, handlers: BrokerHandlers, log: Logger): Broker {
  const history = { historyLength: config.historyLength, historyTtlS: config.historyTtlS, idempotencyTtlS: config.publishIdempotencyTtlS };
  if (config.broker === 'memory') return new MemoryBroker({ ...history, maxDialogs: config.memoryHistoryDialogs }, handlers);
  const timeouts = { commandTimeoutMs: config.redisCommandTimeoutMs, startTimeoutMs: config.redisStartTimeoutMs };
  return new RedisBroker({ url: config.redisUrl!, ...history, ...timeouts, logger: log.child({ component: 'broker' }) }, handlers);
}

/** Creates a gateway from validated config; nothing listens until listen(). */
export function createGateway(config: GatewayConfig, options: GatewayOptions = {}): Gateway {
  const log = options.logger ?? createLogger(config.logLevel, options.logStream, { instance: config.instanceId });
  const capacity = connectionCapacity(config.maxConnections, options.openFileLimits ?? readOpenFileLimits());
  // Admission stops at the capacity, not at MAX_CONNECTIONS: past the open-file limit accept()
  // fails with EMFILE and the client (through nginx: a 502) gets no 4100 to back off from.
  const admission = new Admission({ ...config, maxConnections: capacity.connections });
  const tokens = new TokenVerifier(config, config.tokenPolicy);
  const access = new DialogAccessStore(config.databaseUrl, {
    cacheTtlMs: config.accessCacheTtlMs,
    cacheMax: config.accessCacheMax,
    lookupBatchMax: config.accessLookupBatchMax,
    lookupWindowMs: config.accessLookupWindowMs,
    poolSize: config.databasePoolSize,
    queryTimeoutMs: config.databaseQueryTimeoutMs,
    onIgnoredDomain: (entry, problem, assistantId) =>
      log.warn({ assistant_id: assistantId, entry, problem }, `allowed domain ${JSON.stringify(entry)} of assistant ${assistantId} is ignored (${problem}); list registrable domains, e.g. *.example.com`),
  });
  // Trusted for a little longer than a sweep interval, so handshakes rarely wait for a read.
  const revoked = new RevokedSiteTokens(() => access.revokedSiteTokens(), Math.floor(config.reauthIntervalMs * 1.5));
  // The broker calls the hub and the hub calls the broker; the arrows resolve `hub` at call time.
  const broker = createBroker(
    config,
    { onEvent: (event) => hub.deliver(event), onResync: (dialogId) => hub.resync(dialogId), onReconnect: () => metrics.brokerReconnected() },
    log,
  );
  const metrics: GatewayMetrics = new GatewayMetrics(
    {
      connections: () => hub.members.counts(),
      dialogs: () => hub.members.dialogCount,
      connectionCapacity: () => capacity.connections,
      accessListenerConnected: () => accessChanges.connected,
      dependencies: async () => ({ ...(broker.kind === 'redis' ? { redis: broker.isReady() } : {}), postgres: await access.healthy() }),
      ...(broker instanceof RedisBroker ? { redisRoundTrip: () => broker.roundTrip() } : {}),
    },
    options.processMetrics ?? true,
  );
  const hub: DeliveryHub = new DeliveryHub(broker, config, metrics, log);
  const reauthorizer = new Reauthorizer(hub, { lookupMany: (ids) => access.lookupMany(ids), revoked }, config.reauthIntervalMs, log.child({ component: 'reauth' }));
  const accessTargets = { access, revoked, reauthorizer };
  // Access changes heard so far: a handshake whose authorization spans one may have read the old
  // row after the re-check of its dialog was computed, so accept() has it checked once more.
  let accessChangesHeard = 0;
  const onAccessChange = (change: AccessChange): void => {
    accessChangesHeard += 1;
    applyAccessChange(change, accessTargets);
  };
  const accessChanges = new AccessChangeListener({
    databaseUrl: config.databaseUrl,
    connectTimeoutMs: config.databaseQueryTimeoutMs,
    log: log.child({ component: 'access-changes' }),
    onChange: onAccessChange,
    onConnected: () => onAccessChange({ kind: 'all' }),
    onNotification: () => metrics.accessNotified(),
  });
  const startedAt = Date.now();
  // Expired handshake windows and cache rows are swept about ten times per heartbeat interval.
  const sweepEveryMs = Math.max(1, Math.floor(config.heartbeatMs / 10));
  let sweptAt = 0;
  let draining = false;
  let boundPort = 0;
  let heartbeat: NodeJS.Timeout | undefined;
  let closed: Promise<void> | undefined;
  const isDraining = (): boolean => draining;

  const upgrade = createUpgradeHandler({
    maxPayloadBytes: config.maxPayloadBytes,
    trustedProxies: config.trustedProxies,
    log,
    metrics,
    admission,
    access: {
      tokens,
      lookup: (dialogId) => access.lookup(dialogId),
      assistantDomains: (assistantId) => access.assistantDomains(assistantId),
      revoked,
      legacyWidgetAuth: config.legacyWidgetAuth,
    },
    isDraining,
    accessChanges: () => accessChangesHeard,
    accept: (socket, head, auth, ip, changesAtStart) => {
      // attach() joins the dialog before its first await, so the re-check below sees the socket.
      void hub.attach(socket, head, auth, ip);
      if (changesAtStart !== accessChangesHeard) reauthorizer.request({ dialogs: [auth.dialogId] });
    },
  });
  const handler = createHttpHandler({ config, metrics, log, members: hub.members, broker, database: access, startedAt, isDraining });
  const server = http.createServer((req: IncomingMessage, res: ServerResponse) => void handler(req, res));
  server.on('upgrade', upgrade.handle);
  server.on('clientError', (_err, socket) => socket.destroy());

  // One shared timer: each tick pings one slice of the connections (see HeartbeatWheel), closes
  // expired tokens, starts a re-authorization sweep when one is due, and now and then sweeps the
  // expiring maps.
  const tick = (): void => {
    const now = Date.now();
    hub.heartbeat(now);
    reauthorizer.tick(now);
    if (now - sweptAt < sweepEveryMs) return;
    sweptAt = now;
    admission.sweep(now);
    access.sweep(now);
    if (broker instanceof MemoryBroker) broker.sweep(now);
  };

  const shutdown = async (windowMs: number): Promise<void> => {
    draining = true;
    if (heartbeat) clearInterval(heartbeat);
    // Listen on through the drain: closing the listener now would reset the handshakes a proxy
    // sent just before it stopped routing here (queued for accept, or authorizing), and the proxy
    // answers those 502, which sends clients into backoff. They get 101 + 4200 instead (upgrade.ts).
    await hub.drain(windowMs);
    server.close();
    server.closeIdleConnections();
    await Promise.allSettled([broker.close(), accessChanges.close(), reauthorizer.settled().then(() => access.close()), new Promise<void>((resolve) => server.close(() => resolve()))]);
    upgrade.close();
    log.info({ uptime_s: Math.round((Date.now() - startedAt) / 1000) }, 'gateway stopped');
  };

  return {
    async listen() {
      await tokens.ready();
      // Best effort: without the list, the first site handshake reads it.
      await revoked.refresh().catch((err: unknown) => log.warn({ err: String(err) }, 'could not read replyx_revoked_site_tokens at start; retrying on the first site handshake'));
      await broker.start();
      // In the background: the gateway serves without it (the TTL and the sweep bound every change).
      accessChanges.start();
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ port: config.port, host: config.host, backlog: config.listenBacklog }, () => {
          server.off('error', reject);
          resolve();
        });
      });
      boundPort = (server.address() as AddressInfo).port;
      heartbeat = setInterval(tick, Math.max(1, Math.floor(config.heartbeatMs / hub.heartbeatTicks)));
      heartbeat.unref();
      log.info(
        // `ready` and `pid` make this the line a supervisor can wait for (the local stack does).
        { ready: true, pid: process.pid, port: boundPort, host: config.host, broker: config.broker, algorithm: tokens.algorithm, heartbeat_ms: config.heartbeatMs, reauth_interval_ms: config.reauthIntervalMs, trusted_proxies: config.trustedProxies.cidrs },
        `ws-gateway listening on ${config.host}:${boundPort}`,
      );
      const nofile = openFileWarning(capacity);
      if (nofile !== undefined) log.warn({ code: OPEN_FILE_WARNING_CODE, open_file_limit: capacity.openFileLimit, max_connections: capacity.maxConnections, connection_capacity: capacity.connections }, nofile);
      if (config.legacyWidgetAuth) log.warn('LEGACY_WIDGET_AUTH is on: widgets may connect without a session token (origin check only); turn it off once every widget uses POST /api/widget/sessions');
      return boundPort;
    },
    handOver() {
      // Closing the listening socket frees the port at once (libuv closes the fd synchronously);
      // accepted sockets, upgraded or not, stay with this process.
      if (server.listening) server.close();
      return Promise.resolve();
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
    hub: hub.members,
    broker,
    metrics,
    logger: log,
    publish: (input) => broker.publish(input),
    connections: () => hub.members.counts(),
  };
}
