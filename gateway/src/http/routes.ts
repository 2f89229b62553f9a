import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Broker } from '../broker/broker.js';
import type { GatewayConfig } from '../config.js';
import type { DialogHub } from '../hub/dialog-hub.js';
import { hasForwardingHeaders, isLoopbackAddress, peerAddress } from '../limits/client-ip.js';
import { matchEndpoint, upgradeRequiredResponse } from '../access/endpoints.js';
import { sanitizeUrl } from '../log/logger.js';
import type { GatewayMetrics } from '../metrics/gateway-metrics.js';
import { parsePublishBody } from './publish-request.js';
import { BodyTooLargeError, readBody, secretMatches } from './request-body.js';

// The gateway's HTTP endpoints: /health, /metrics, the two debug endpoints (internal callers
// only) and POST /internal/publish; a plain request on a WebSocket path gets 426 with a hint.
// nginx routes none of /internal/ or /api/debug/.

/** What the HTTP endpoints read from the gateway. */
export interface HttpDeps {
  readonly config: GatewayConfig;
  readonly metrics: GatewayMetrics;
  readonly log: Logger;
  /** Who is on which dialog. */
  readonly members: DialogHub;
  readonly broker: Broker;
  /** The dialog-access database (its health only). */
  readonly database: { healthy(): Promise<boolean> };
  /** When the gateway was created (ms). */
  readonly startedAt: number;
  isDraining(): boolean;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

/**
 * True when a debug request carries the debug token, or comes straight from loopback: a loopback
 * peer that forwards someone (any X-Real-IP / X-Forwarded-For / Forwarded header, i.e. a proxy
 * such as the local nginx) needs the token like everyone else, and so does any other address,
 * private ones included (a container network is not a trust boundary).
 */
export function isInternalCaller(req: IncomingMessage, debugToken: string | undefined): boolean {
  if (secretMatches(req.headers['x-debug-token'], debugToken)) return true;
  return isLoopbackAddress(peerAddress(req)) && !hasForwardingHeaders(req);
}

/** Builds the request handler for every non-WebSocket request. */
export function createHttpHandler(deps: HttpDeps): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const { config, metrics, log, members, broker } = deps;

  const health = async () => {
    const db = await deps.database.healthy();
    const brokerUp = broker.isReady();
    const draining = deps.isDraining();
    const ok = db && brokerUp && !draining;
    return {
      ok,
      body: {
        status: ok ? 'ok' : draining ? 'draining' : 'unavailable',
        instance: config.instanceId,
        broker: config.broker,
        redis: config.broker === 'memory' ? 'not-used' : brokerUp ? 'up' : 'down',
        db: db ? 'up' : 'down',
        connections: members.size,
      },
    };
  };

  const status = () => ({
    instance: config.instanceId,
    pid: process.pid,
    workers: 1,
    uptime_s: Math.round((Date.now() - deps.startedAt) / 1000),
    broker: config.broker,
    broker_ready: broker.isReady(),
    draining: deps.isDraining(),
    connections: { ...members.counts(), total: members.size },
    dialogs: members.dialogCount,
    subscribed_dialogs: broker.subscribedCount,
  });

  const sync = async (dialogId: number) => {
    const counts = members.dialogCounts(dialogId);
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
      subscribed: members.has(dialogId),
      last_event_id: lastEventId,
    };
  };

  const publish = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (!secretMatches(req.headers['x-publish-key'], config.publishKey)) {
      metrics.published('unauthorized');
      log.warn({ ip: peerAddress(req) }, 'publish refused: bad or missing X-Publish-Key');
      return json(res, 401, { error: 'bad or missing X-Publish-Key header' });
    }
    let body: Buffer;
    try {
      body = await readBody(req, config.publishMaxBytes);
    } catch (err) {
      metrics.published('bad-request');
      if (err instanceof BodyTooLargeError) return json(res, 413, { error: `body larger than PUBLISH_MAX_BYTES (${config.publishMaxBytes})` });
      throw err;
    }
    const parsed = parsePublishBody(body.toString('utf8'));
    if (!parsed.ok) {
      metrics.published('bad-request');
      return json(res, 400, { error: parsed.reason });
    }
    if (!broker.isReady()) {
      metrics.published('unavailable');
      return json(res, 503, { error: 'broker (Redis) unavailable; the event was not stored, retry later' });
    }
    let id: string;
    try {
      id = await broker.publish(parsed.input);
    } catch (err) {
      metrics.published('unavailable');
      log.warn({ dialog_id: parsed.input.dialogId, err: String(err) }, 'publish failed: event not stored');
      return json(res, 503, { error: 'broker (Redis) unavailable; the event was not stored, retry later' });
    }
    metrics.published('accepted');
    json(res, 202, { id });
  };

  return async (req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0];
    try {
      if (path === '/health' && (req.method === 'GET' || req.method === 'HEAD')) {
        const h = await health();
        return json(res, h.ok ? 200 : 503, h.body);
      }
      if (path === '/metrics' && req.method === 'GET') {
        const text = await metrics.render();
        res.writeHead(200, { 'content-type': metrics.contentType });
        res.end(text);
        return;
      }
      if (path === '/internal/publish') {
        if (req.method !== 'POST') return json(res, 405, { error: 'use POST' });
        return await publish(req, res);
      }
      if (path === '/api/debug/websocket/status' || path === '/api/debug/websocket/sync') {
        if (req.method !== 'GET') return json(res, 405, { error: 'use GET' });
        if (!isInternalCaller(req, config.debugToken)) {
          log.warn({ ip: peerAddress(req), url: sanitizeUrl(req.url) }, 'debug endpoint refused: caller is not internal');
          return json(res, 403, { error: 'debug endpoints need a valid X-Debug-Token header (only direct loopback callers without forwarding headers are exempt)' });
        }
        if (path.endsWith('/status')) return json(res, 200, status());
        const raw = new URL(req.url ?? '/', 'http://gateway').searchParams.get('dialog_id') ?? '';
        const dialogId = /^\d{1,16}$/.test(raw) ? Number(raw) : 0;
        if (!(dialogId > 0)) return json(res, 400, { error: 'dialog_id must be a positive integer' });
        return json(res, 200, await sync(dialogId));
      }
      if (matchEndpoint(path)) {
        // A WebSocket path asked without an upgrade (curl, a browser tab): say what it is, not 404.
        const answer = upgradeRequiredResponse();
        res.writeHead(answer.status, answer.headers);
        res.end(answer.body);
        return;
      }
      json(res, 404, { error: 'not found' });
    } catch (err) {
      log.error({ url: sanitizeUrl(req.url), err: String(err) }, 'HTTP handler failed');
      if (!res.headersSent) json(res, 500, { error: 'internal error' });
      else res.destroy();
    }
  };
}
