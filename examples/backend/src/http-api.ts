import type { IncomingMessage, ServerResponse } from 'node:http';
import type pg from 'pg';
import type { Logger } from 'pino';
import { z } from 'zod';
import { authorise, denied, verifyAdminToken, verifySiteToken, widgetOrigin, type Caller, type Denial } from './access.js';
import { dialogAccess, insertMessage, listMessages, setEventId, type MessageRow } from './store.js';

// The backend's HTTP API: the seed's three write paths and a history read. Every write is
// stored first, then published; the caller learns the event id the clients will see.

/** What the API needs from the worker. */
export interface ApiDeps {
  readonly db: pg.Pool;
  readonly jwtSecret: string;
  readonly maxBodyBytes: number;
  readonly log: Logger;
  /** Publishes a stored message; resolves with its event id. */
  readonly publish: (message: MessageRow) => Promise<string>;
  /** Health of the worker's dependencies, for GET /health. */
  readonly health: () => Promise<{ status: 'ok' | 'degraded' | 'starting'; db: string; redis: string }>;
  readonly workers: number;
}

/** An API error: HTTP status, stable code, reason. */
export class ApiError extends Error {
  /** Creates an error answered as `{"error":{"code","message"}}` with `status`. */
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const dialogIdSchema = z.coerce.number().int().min(1).max(Number.MAX_SAFE_INTEGER);
const messageBody = z.strictObject({ text: z.string().trim().min(1, 'text must not be empty').max(4000, 'text must be at most 4000 characters') });
const historyQuery = z.object({
  since: z.coerce.number().int().min(0).default(0),
  limit: z.coerce.number().int().min(1).max(500).default(100),
});
const assistantIdSchema = z.coerce.number().int().min(1).max(Number.MAX_SAFE_INTEGER);

const STATUS_BY_DENIAL: Record<Denial['code'], number> = { UNAUTHORIZED: 401, ORIGIN_FORBIDDEN: 403, DIALOG_NOT_FOUND: 404 };

/** Which sender a caller's messages are stored as. */
const SENDER: Record<Caller['kind'], string> = { admin: 'operator', site: 'site', widget: 'user' };

function zodReason(err: z.ZodError): string {
  return err.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message)).join('; ');
}

function parseOr400<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value);
  if (!r.success) throw new ApiError(400, 'BAD_REQUEST', `${what}: ${zodReason(r.error)}`);
  return r.data;
}

/** Reads a JSON body up to `limit` bytes; 413 past it, 415/400 for non-JSON. */
export async function readJsonBody(req: IncomingMessage, limit: number): Promise<unknown> {
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/json\b/i.test(type)) throw new ApiError(415, 'UNSUPPORTED_MEDIA_TYPE', 'send the body as application/json');
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > limit) throw new ApiError(413, 'PAYLOAD_TOO_LARGE', `body is larger than ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new ApiError(413, 'PAYLOAD_TOO_LARGE', `body is larger than ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    throw new ApiError(400, 'BAD_REQUEST', 'body is not valid JSON');
  }
}

function bearer(req: IncomingMessage): string | undefined {
  const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
  return m?.[1];
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function throwIfDenied<T>(v: T | Denial): T {
  if (denied(v)) throw new ApiError(STATUS_BY_DENIAL[v.code], v.code, v.reason);
  return v;
}

/** Resolves who is calling from the route's credential. */
async function callerFor(route: 'admin' | 'site' | 'widget' | 'any', req: IncomingMessage, url: URL, secret: string): Promise<Caller> {
  const q = url.searchParams;
  const kind = route !== 'any' ? route : bearer(req) ? 'admin' : q.has('site_token') ? 'site' : q.has('assistant_id') ? 'widget' : undefined;
  switch (kind) {
    case 'admin':
      return { kind: 'admin', ...throwIfDenied(await verifyAdminToken(secret, bearer(req))) };
    case 'site':
      return { kind: 'site', ...throwIfDenied(await verifySiteToken(secret, q.get('site_token') ?? undefined)) };
    case 'widget': {
      const assistantId = parseOr400(assistantIdSchema, q.get('assistant_id') ?? undefined, 'assistant_id');
      const origin = throwIfDenied(widgetOrigin(q.get('parent_origin') ?? undefined, header(req, 'origin')));
      return { kind: 'widget', assistantId, origin };
    }
    default:
      throw new ApiError(401, 'UNAUTHORIZED', 'send Authorization: Bearer <JWT>, ?site_token= or ?assistant_id= with an Origin');
  }
}

const ROUTES: { method: string; pattern: RegExp; route: 'admin' | 'site' | 'widget' | 'any'; action: 'post' | 'list' }[] = [
  { method: 'POST', pattern: /^\/api\/site\/dialogs\/([^/]+)\/messages$/, route: 'site', action: 'post' },
  { method: 'POST', pattern: /^\/api\/widget\/dialogs\/([^/]+)\/messages$/, route: 'widget', action: 'post' },
  { method: 'POST', pattern: /^\/api\/dialogs\/([^/]+)\/messages$/, route: 'admin', action: 'post' },
  { method: 'GET', pattern: /^\/api\/dialogs\/([^/]+)\/messages$/, route: 'any', action: 'list' },
];

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
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
    const dialogId = parseOr400(dialogIdSchema, route.pattern.exec(url.pathname)![1], 'dialog id');
    if (route.action === 'post') {
      // Validate the body before the credential check costs a DB round trip.
      const body = parseOr400(messageBody, await readJsonBody(req, deps.maxBodyBytes), 'body');
      const caller = await callerFor(route.route, req, url, deps.jwtSecret);
      throwIfDenied(authorise(caller, await dialogAccess(deps.db, dialogId)) ?? caller);
      const row = await insertMessage(deps.db, dialogId, SENDER[caller.kind], body.text);
      let eventId: string;
      try {
        eventId = await deps.publish(row);
      } catch (err) {
        deps.log.error({ err, dialogId, messageId: row.id }, 'publish failed');
        throw new ApiError(503, 'PUBLISH_FAILED', `message ${row.id} was stored but not published: ${(err as Error).message}`);
      }
      await setEventId(deps.db, row.id, eventId);
      deps.log.info({ dialogId, messageId: row.id, eventId, via: caller.kind }, `Broadcasting message ${row.id} to dialog ${dialogId}`);
      send(res, 201, { message: { ...row, event_id: eventId }, event_id: eventId });
      return;
    }
    const q = parseOr400(historyQuery, Object.fromEntries(url.searchParams), 'query');
    const caller = await callerFor('any', req, url, deps.jwtSecret);
    throwIfDenied(authorise(caller, await dialogAccess(deps.db, dialogId)) ?? caller);
    send(res, 200, { dialog_id: dialogId, messages: await listMessages(deps.db, dialogId, q.since, q.limit) });
  } catch (err) {
    if (err instanceof ApiError) {
      send(res, err.status, { error: { code: err.code, message: err.message } });
      return;
    }
    deps.log.error({ err }, 'request failed');
    if (!res.headersSent) send(res, 500, { error: { code: 'INTERNAL', message: 'internal error' } });
    else res.destroy();
  }
}
