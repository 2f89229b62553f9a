import http from 'node:http';
import { Redis } from 'ioredis';
import pg from 'pg';
import type { Logger } from 'pino';
import { upgradeRequiredResponse } from '@replyx/gateway/access/endpoints';
import { TokenVerifier } from '@replyx/gateway/auth/tokens';
import { eventFrame } from '@replyx/gateway/broker/protocol';
import { RedisPublisher } from '@replyx/gateway/broker/publisher';
import { ignoredDomainReporter } from '@replyx/gateway/origin/allowed-domains';
import type { BackendCredentials } from './access.js';
import type { BackendConfig } from './config.js';
import { handleApiRequest, routeTemplate } from './http-api.js';
import { attachLegacyWebSockets, matchLegacyPath } from './legacy-ws.js';
import { redactUrl } from './log.js';
import { messageIdempotencyKey, OutboxRelay } from './outbox.js';
import { assistantById, dialogAccess, isSiteTokenRevoked, messageData, type MessageRow } from './store.js';
import { UNMATCHED_ROUTE, WorkerMetrics } from './metrics.js';

/** A running worker: its HTTP server and a way to stop it cleanly. */
export interface BackendWorker {
  readonly server: http.Server;
  /** Port the server listens on (useful with port 0 in tests). */
  readonly port: number;
  /** Drains: stops accepting, finishes in-flight requests, waits up to `graceMs` for connections to end. */
  close(graceMs?: number): Promise<void>;
}

/** The longest a request may take (Node's `server.requestTimeout`); a slower one is answered 408. */
export const REQUEST_TIMEOUT_MS = 30_000;

/**
 * How long a draining worker waits for its connections to end before cutting them: as long as a
 * request may take, so a request that reached the worker is always finished, never cut. Usually
 * the drain ends within nginx's upstream keepalive timeout (4 s, BACKEND_KEEPALIVE_TIMEOUT_S in
 * infra/render/nginx.ts), when nginx has closed the idle connections.
 */
export const DRAIN_GRACE_MS = REQUEST_TIMEOUT_MS + 1000;

/** The event type every stored message is published as. */
export const MESSAGE_EVENT = 'message:new';

async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Starts one worker: HTTP API + legacy /ws/ on `config.port` (shared with the other cluster
 * workers), a Postgres pool and a Redis connection for publishing. `/health` says "starting"
 * (503) until `clusterReady()` is true.
 */
export async function startWorker(
  config: BackendConfig,
  log: Logger,
  listenPort = config.port,
  clusterReady: () => boolean = () => true,
  options: { readonly processMetrics?: boolean } = {},
): Promise<BackendWorker> {
  const db = new pg.Pool({ connectionString: config.databaseUrl, max: 10, connectionTimeoutMillis: 3000 });
  // pg attaches the whole client to an idle connection's error: log what the operator needs, not kilobytes of driver state.
  db.on('error', (err: Error & { code?: string }) => log.error({ err: err.message, code: err.code }, 'postgres pool error'));
  // No offline queue: while Redis is down a publish fails at once and the outbox relay retries it.
  const redis = new Redis(config.redisUrl, { enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 3000, lazyConnect: true });
  redis.on('error', (err) => log.warn({ err: err.message }, 'redis connection error'));
  await withTimeout(redis.connect(), 10_000).catch((err: unknown) => log.error({ err }, 'redis not reachable at start; messages wait in the outbox until it is'));
  const publisher = new RedisPublisher(redis, { historyLength: config.historyLength, historyTtlS: config.historyTtlS, idempotencyTtlS: config.publishIdempotencyTtlS });

  const checked = ignoredDomainReporter((entry, problem, assistantId) =>
    log.warn({ assistantId, entry, problem }, `allowed domain ${JSON.stringify(entry)} of assistant ${assistantId} is ignored (${problem}); list registrable domains, e.g. *.example.com`),
  );
  const credentials: BackendCredentials = {
    tokens: new TokenVerifier(config.tokenKeys, config.tokenPolicy),
    isRevoked: (jti) => isSiteTokenRevoked(db, jti),
    keys: config.tokenKeys,
    policy: config.tokenPolicy,
    legacyWidgetAuth: config.legacyWidgetAuth,
    assistantDomains: async (id) => {
      const a = await assistantById(db, id);
      return a && checked(id, a.allowedDomains);
    },
    dialogAccess: async (id) => {
      const row = await dialogAccess(db, id);
      return row && { ...row, allowedDomains: checked(row.assistantId, row.allowedDomains) };
    },
  };
  const server = http.createServer();
  // Each reads the other: the gauge reads `legacy` only when scraped, after both exist.
  const metrics = new WorkerMetrics({ defaults: options.processMetrics ?? true, legacyConnections: () => legacy.counts() });
  const legacy = attachLegacyWebSockets(server, { db, credentials, log, redis, historyLength: config.historyLength, onNotRouted: () => metrics.notRouted() });

  // One event per message: its data is the stored message, its idempotency key the message id.
  const relay = new OutboxRelay(
    {
      db,
      log,
      publish: (row: MessageRow) => publisher.publishEvent({ dialogId: row.dialog_id, type: MESSAGE_EVENT, data: messageData(row), idempotencyKey: messageIdempotencyKey(row) }),
      onPublished: (row, eventId) => {
        metrics.published();
        // Legacy /ws/ on this worker gets the frame the gateway would send (ts: this clock, not Redis').
        legacy.deliver(row.dialog_id, eventId, eventFrame(eventId, MESSAGE_EVENT, row.dialog_id, JSON.stringify(messageData(row)), Date.now()));
      },
      onFailed: () => metrics.publishFailed(),
    },
    { pollMs: config.outboxPollMs, retryMaxMs: config.outboxRetryMaxMs, idempotencyRetentionS: config.idempotencyRetentionS },
  );
  const serveMetrics = async (res: http.ServerResponse): Promise<void> => {
    try {
      const text = await metrics.render();
      res.writeHead(200, { 'content-type': metrics.contentType, 'cache-control': 'no-store' });
      res.end(text);
    } catch (err) {
      log.warn({ err: String(err) }, 'metrics unavailable');
      res.writeHead(503, { 'content-type': 'application/json; charset=utf-8' });
      res.end(JSON.stringify({ error: { code: 'METRICS_UNAVAILABLE', message: `${String(err)}; retry the scrape` } }));
    }
  };
  const health = async () => {
    const [dbState, redisState] = await Promise.all([
      withTimeout(db.query('SELECT 1'), 2000).then(() => 'ok', (err: Error) => `error: ${err.message}`),
      withTimeout(redis.ping(), 2000).then(() => 'ok', (err: Error) => `error: ${err.message}`),
    ]);
    // Until every worker listens, the cluster is not the configured backend yet: report it.
    const status = dbState !== 'ok' || redisState !== 'ok' ? ('degraded' as const) : clusterReady() ? ('ok' as const) : ('starting' as const);
    return { status, db: dbState, redis: redisState };
  };

  // Once draining, every answer ends its connection, so nginx stops reusing this worker's
  // sockets and nothing new reaches it while in-flight requests finish.
  let draining = false;
  server.on('request', (req, res) => {
    if (draining) res.setHeader('connection', 'close');
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      metrics.observeRequest(req.method, routeTemplate(req.url ?? '/') ?? UNMATCHED_ROUTE, res.statusCode, seconds);
      log.debug({ method: req.method, url: redactUrl(req.url ?? ''), status: res.statusCode, ms: Math.round(seconds * 1000) }, 'request');
    });
    if (routeTemplate(req.url ?? '/') === '/metrics' && req.method === 'GET') {
      void serveMetrics(res);
      return;
    }
    if (matchLegacyPath((req.url ?? '/').split('?', 1)[0]!)) {
      // After a rollback nginx sends /ws/ here: a plain request gets the gateway's 426, not 404.
      const answer = upgradeRequiredResponse();
      res.writeHead(answer.status, answer.headers);
      res.end(answer.body);
      return;
    }
    void handleApiRequest(
      {
        db,
        credentials,
        maxBodyBytes: config.maxBodyBytes,
        log,
        publishNow: (row) => relay.publishNow(row),
        publishDelayMs: config.outboxClaimDelayMs,
        idempotencyRetentionS: config.idempotencyRetentionS,
        health,
        workers: config.workers,
      },
      req,
      res,
    );
  });
  // Slow or idle clients must not hold a worker's sockets forever.
  server.headersTimeout = 10_000;
  server.requestTimeout = REQUEST_TIMEOUT_MS;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listenPort, config.host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : listenPort;
  relay.start();
  return {
    server,
    port,
    async close(graceMs = DRAIN_GRACE_MS) {
      draining = true;
      legacy.close();
      // Stop accepting, let in-flight requests finish (their answers close their connections),
      // and leave idle keepalive connections to nginx, which closes them within its keepalive
      // timeout: closing one ourselves races a request nginx may be sending on it (a cut POST).
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.closeAllConnections();
          resolve();
        }, graceMs);
        server.close(() => {
          clearTimeout(force);
          resolve();
        });
      });
      // The relay publishes what the finished requests stored; it stops once they are done.
      await relay.stop();
      redis.disconnect();
      await db.end();
    },
  };
}
