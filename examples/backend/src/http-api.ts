import type { IncomingMessage, ServerResponse } from 'node:http';
import type pg from 'pg';
import type { Logger } from 'pino';
import { z } from 'zod';
import { bearerToken } from '@replyx/gateway/auth/credentials';
import { claimedTokenKind } from '@replyx/gateway/auth/tokens';
import type { ConnectionKind } from '@replyx/gateway/connection-kinds';
import { authorise, callerFromToken, denied, legacyWidgetCaller, type BackendCredentials, type Caller, type Denial } from './access.js';
import { issueSiteToken, revokeSiteTokenOf, widgetSession, type Answer } from './credential-api.js';
import { ApiError, header, idSchema, parseOr400, readJsonBody, send } from './http-io.js';
import { IDEMPOTENCY_HEADER, idempotencyScope, parseIdempotencyKey, requestHash } from './idempotency.js';
import { clearProbeDialog, isDatabaseUnavailable, listMessages, storeMessage, type MessageRow } from './store.js';

// The backend's HTTP API: the seed's three write paths and a history read, each with its own
// credential (operator JWT, site token, widget session token, all as `Authorization: Bearer`;
// the seed's `?site_token=` still works, deprecated), plus the credential endpoints. A message is
// stored with its outbox row in one transaction and answered 201 once durable; the request then
// publishes it (the relay does if that fails), so the reply's event id is null while Redis is away.

/** What the API needs from the worker. */
export interface ApiDeps {
  readonly db: pg.Pool;
  readonly credentials: BackendCredentials;
  readonly maxBodyBytes: number;
  readonly log: Logger;
  /** Publishes a stored message now: its event id, or undefined when the outbox relay will (never throws). */
  readonly publishNow: (message: MessageRow) => Promise<string | undefined>;
  /** How long the relay leaves a new message to the request that stored it (OUTBOX_CLAIM_DELAY_MS). */
  readonly publishDelayMs: number;
  /** Seconds an Idempotency-Key answers retries (IDEMPOTENCY_RETENTION_S). */
  readonly idempotencyRetentionS: number;
  /** Health of the worker's dependencies, for GET /health. */
  readonly health: () => Promise<{ status: 'ok' | 'degraded' | 'starting'; db: string; redis: string }>;
  readonly workers: number;
}

const messageBody = z.strictObject({
  text: z
    .string()
    .trim()
    .min(1, 'text must not be empty')
    .max(4000, 'text must be at most 4000 characters')
    // Postgres text cannot hold U+0000; refuse it here rather than fail the insert.
    .refine((t) => !t.includes('\u0000'), 'text must not contain NUL (U+0000) characters'),
});
const historyQuery = z.object({
  since: z.coerce.number().int().min(0).default(0),
  limit: z.coerce.number().int().min(1).max(500).default(100),
});

const STATUS_BY_DENIAL: Record<Denial['code'], number> = { UNAUTHORIZED: 401, ORIGIN_FORBIDDEN: 403, DIALOG_NOT_FOUND: 404 };

/** Which sender a caller's messages are stored as. */
const SENDER: Record<ConnectionKind, string> = { admin: 'operator', site: 'site', widget: 'user' };

function throwIfDenied<T>(v: T | Denial): T {
  if (denied(v)) throw new ApiError(STATUS_BY_DENIAL[v.code], v.code, v.reason);
  return v;
}

/**
 * Resolves who is calling. A route names the kind it takes; on `any` the token's `type` decides
 * (Bearer), else `?site_token=` (deprecated) or, with LEGACY_WIDGET_AUTH, `?assistant_id=`.
 */
async function callerFor(route: ConnectionKind | 'any', req: IncomingMessage, url: URL, deps: ApiDeps): Promise<Caller> {
  const q = url.searchParams;
  const creds = deps.credentials;
  const bearer = bearerToken(header(req, 'authorization'));
  const kind: ConnectionKind | undefined =
    route !== 'any' ? route : bearer ? (claimedTokenKind(bearer) ?? 'admin') : q.has('site_token') ? 'site' : q.has('assistant_id') ? 'widget' : undefined;
  if (!kind) throw new ApiError(401, 'UNAUTHORIZED', 'send Authorization: Bearer <token> (an operator, site or widget session token)');
  if (kind === 'widget' && !bearer) {
    if (!creds.legacyWidgetAuth || !q.has('assistant_id')) throw new ApiError(401, 'UNAUTHORIZED', 'widget calls need Authorization: Bearer <widget token> from POST /api/widget/sessions');
    const assistantId = parseOr400(idSchema, q.get('assistant_id'), 'assistant_id');
    return throwIfDenied(await legacyWidgetCaller(assistantId, q.get('parent_origin') ?? undefined, header(req, 'origin'), creds.assistantDomains));
  }
  let token = bearer;
  if (!token && kind === 'site' && q.get('site_token')) {
    token = q.get('site_token')!;
    deps.log.debug({ path: url.pathname, via: 'query' }, 'deprecated credential: site token in the query string (send Authorization: Bearer)');
  }
  return throwIfDenied(await callerFromToken(creds, kind, token, kind === 'site' ? header(req, 'origin') : undefined));
}

type Action = 'post' | 'list' | 'clear-probe' | 'session' | 'issue-site-token' | 'revoke-site-token';

// `template` is the route as metrics label it (ids replaced by `{id}`, so the label set stays bounded).
const ROUTES: { method: string; pattern: RegExp; template: string; route: ConnectionKind | 'any' | 'public'; action: Action }[] = [
  { method: 'POST', pattern: /^\/api\/site\/dialogs\/([^/]+)\/messages$/, template: '/api/site/dialogs/{id}/messages', route: 'site', action: 'post' },
  { method: 'POST', pattern: /^\/api\/widget\/dialogs\/([^/]+)\/messages$/, template: '/api/widget/dialogs/{id}/messages', route: 'widget', action: 'post' },
  { method: 'POST', pattern: /^\/api\/dialogs\/([^/]+)\/messages$/, template: '/api/dialogs/{id}/messages', route: 'admin', action: 'post' },
  { method: 'GET', pattern: /^\/api\/dialogs\/([^/]+)\/messages$/, template: '/api/dialogs/{id}/messages', route: 'any', action: 'list' },
  { method: 'DELETE', pattern: /^\/api\/dialogs\/([^/]+)\/messages$/, template: '/api/dialogs/{id}/messages', route: 'admin', action: 'clear-probe' },
  { method: 'POST', pattern: /^\/api\/widget\/sessions$/, template: '/api/widget/sessions', route: 'public', action: 'session' },
  { method: 'POST', pattern: /^\/api\/site-tokens$/, template: '/api/site-tokens', route: 'admin', action: 'issue-site-token' },
  { method: 'DELETE', pattern: /^\/api\/site-tokens\/([^/]+)$/, template: '/api/site-tokens/{jti}', route: 'admin', action: 'revoke-site-token' },
];

/** Paths the worker answers itself, besides the API routes. */
const FIXED_PATHS: ReadonlySet<string> = new Set(['/health', '/metrics']);

/** The route template of a request path (`/api/dialogs/{id}/messages`, `/health`), or undefined when no route matches. */
export function routeTemplate(rawUrl: string): string | undefined {
  const q = rawUrl.indexOf('?');
  const pathname = q < 0 ? rawUrl : rawUrl.slice(0, q);
  if (FIXED_PATHS.has(pathname)) return pathname;
  return ROUTES.find((r) => r.pattern.test(pathname))?.template;
}

async function postMessage(deps: ApiDeps, req: IncomingMessage, url: URL, route: ConnectionKind, dialogId: number, template: string): Promise<Answer> {
  const key = parseIdempotencyKey(header(req, IDEMPOTENCY_HEADER));
  if (!key.ok) throw new ApiError(400, 'BAD_IDEMPOTENCY_KEY', key.reason);
  // Validate the body before the credential check costs a DB round trip.
  const body = parseOr400(messageBody, await readJsonBody(req, deps.maxBodyBytes), 'body');
  const caller = await callerFor(route, req, url, deps);
  throwIfDenied(authorise(caller, dialogId, await deps.credentials.dialogAccess(dialogId)) ?? caller);
  const claim = key.key === undefined ? undefined : { scope: idempotencyScope(caller.grant, dialogId), key: key.key, requestHash: requestHash(`POST ${template}`, body), retentionS: deps.idempotencyRetentionS };
  const outcome = await storeMessage(deps.db, { dialogId, sender: SENDER[caller.kind], text: body.text, claim, publishDelayMs: deps.publishDelayMs });
  if (outcome.kind === 'key-reused') {
    throw new ApiError(422, 'IDEMPOTENCY_KEY_REUSED', `Idempotency-Key ${JSON.stringify(key.key)} was used for another request on this dialog; use a new key for a new message`);
  }
  if (outcome.kind === 'replayed') {
    deps.log.info({ dialogId, messageId: outcome.message.id, via: caller.kind }, `retry of message ${outcome.message.id} answered from its Idempotency-Key`);
    return { status: 201, body: messageReply(outcome.message, outcome.message.event_id), headers: { 'idempotent-replayed': 'true' } };
  }
  const row = outcome.message;
  const eventId = await deps.publishNow(row);
  deps.log.info({ dialogId, messageId: row.id, eventId, via: caller.kind }, eventId ? `Broadcasting message ${row.id} to dialog ${dialogId}` : `message ${row.id} stored; the outbox relay publishes it when Redis is back`);
  return { status: 201, body: messageReply(row, eventId ?? null) };
}

/** The reply of a message POST: the message (as stored, with its event id once published) and that event id. */
function messageReply(row: MessageRow, eventId: string | null): Record<string, unknown> {
  return { message: { ...row, event_id: eventId }, event_id: eventId };
}

/** Handles one HTTP request of the API (routes, auth, validation, persistence, publish). */
export async function handleApiRequest(deps: ApiDeps, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://backend.invalid');
  try {
    if (url.pathname === '/health') {
      if (req.method !== 'GET' && req.method !== 'HEAD') throw new ApiError(405, 'METHOD_NOT_ALLOWED', 'use GET /health');
      const h = await deps.health();
      send(res, h.status === 'ok' ? 200 : 503, { status: h.status, service: 'backend', pid: process.pid, workers: deps.workers, db: h.db, redis: h.redis });
      return;
    }
    const pathMatches = ROUTES.filter((r) => r.pattern.test(url.pathname));
    if (pathMatches.length === 0) throw new ApiError(404, 'NOT_FOUND', `no route for ${url.pathname}`);
    const route = pathMatches.find((r) => r.method === req.method);
    if (!route) throw new ApiError(405, 'METHOD_NOT_ALLOWED', `${req.method ?? '?'} is not allowed on ${url.pathname}`);
    const segment = route.pattern.exec(url.pathname)![1];
    let answer: Answer;
    switch (route.action) {
      case 'session':
        // The seed's grep word for a refused widget domain, with the fields runbooks/domain-4003.md reads (as the gateway's 4003 line).
        answer = await widgetSession(deps.db, deps.credentials, req, await readJsonBody(req, deps.maxBodyBytes), (assistantId, origin) =>
          deps.log.warn({ assistant_id: assistantId, origin }, `WEBSOCKET_4003_ERROR [Widget] domain forbidden: widget session refused: assistant_id=${assistantId} origin=${JSON.stringify(origin)}`),
        );
        break;
      case 'issue-site-token': {
        const raw = await readJsonBody(req, deps.maxBodyBytes);
        answer = await issueSiteToken(deps.db, deps.credentials, await callerFor('admin', req, url, deps), raw);
        break;
      }
      case 'revoke-site-token':
        answer = await revokeSiteTokenOf(deps.db, await callerFor('admin', req, url, deps), segment!);
        break;
      case 'post':
        answer = await postMessage(deps, req, url, route.route as ConnectionKind, parseOr400(idSchema, segment, 'dialog id'), route.template);
        break;
      case 'clear-probe': {
        // Only a probe dialog's messages can be deleted: the health probe cleans up after itself.
        const dialogId = parseOr400(idSchema, segment, 'dialog id');
        const caller = await callerFor('admin', req, url, deps);
        throwIfDenied(authorise(caller, dialogId, await deps.credentials.dialogAccess(dialogId)) ?? caller);
        const deleted = await clearProbeDialog(deps.db, dialogId);
        if (deleted === undefined) throw new ApiError(409, 'NOT_A_PROBE_DIALOG', `dialog ${dialogId} is not a probe dialog: only a probe dialog's messages can be deleted`);
        answer = { status: 200, body: { dialog_id: dialogId, deleted } };
        break;
      }
      case 'list': {
        const dialogId = parseOr400(idSchema, segment, 'dialog id');
        const q = parseOr400(historyQuery, Object.fromEntries(url.searchParams), 'query');
        const caller = await callerFor('any', req, url, deps);
        throwIfDenied(authorise(caller, dialogId, await deps.credentials.dialogAccess(dialogId)) ?? caller);
        answer = { status: 200, body: { dialog_id: dialogId, messages: await listMessages(deps.db, dialogId, q.since, q.limit) } };
        break;
      }
    }
    if (answer.body === undefined) {
      res.writeHead(answer.status, { 'cache-control': 'no-store', ...answer.headers });
      res.end();
    } else {
      send(res, answer.status, answer.body, answer.headers);
    }
  } catch (err) {
    if (err instanceof ApiError) {
      send(res, err.status, { error: { code: err.code, message: err.message } });
      return;
    }
    if (isDatabaseUnavailable(err)) {
      deps.log.warn({ err: String((err as Error).message ?? err) }, 'database unavailable');
      if (!res.headersSent) send(res, 503, { error: { code: 'DATABASE_UNAVAILABLE', message: 'the database is unavailable; nothing was published. Retry with the same Idempotency-Key' } }, { 'retry-after': '1' });
      else res.destroy();
      return;
    }
    deps.log.error({ err }, 'request failed');
    if (!res.headersSent) send(res, 500, { error: { code: 'INTERNAL', message: 'internal error' } });
    else res.destroy();
  }
}
