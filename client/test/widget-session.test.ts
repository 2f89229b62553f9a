import type { ServerResponse } from 'node:http';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { DialogClient, ReplyxClientError, WidgetSession, type ClientState, type VisitorKeyStorage } from '../src/index.js';
import { fakeJwt, startScriptedServer, type ScriptedServer } from './scripted-server.js';

// Widget sessions against a scripted `POST /api/widget/sessions` that behaves as contract-v2
// describes (create or resume by visitor key, refuse by origin), with a widget DialogClient on
// the same server's WebSocket side.

interface SessionRequest {
  body: { assistant_id?: number; parent_origin?: string; visitor_key?: string };
  idempotencyKey: string | undefined;
  contentType: string | undefined;
}

interface FakeApi {
  requests: SessionRequest[];
  /** Dialog of each visitor key the API knows. */
  visitors: Map<string, number>;
  /** Statuses to answer before behaving normally (e.g. 503, 403). */
  failures: number[];
  expiresInS: number;
}

let server: ScriptedServer;
let api: FakeApi;
const clients: DialogClient[] = [];

function answer(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

beforeEach(async () => {
  server = await startScriptedServer();
  api = { requests: [], visitors: new Map(), failures: [], expiresInS: 900 };
  let nextDialog = 123;
  server.http = (req, raw, res) => {
    if (req.method !== 'POST' || req.url !== '/api/widget/sessions') return answer(res, 404, { error: 'not found' });
    const body = JSON.parse(raw) as SessionRequest['body'];
    api.requests.push({ body, idempotencyKey: req.headers['idempotency-key'] as string | undefined, contentType: req.headers['content-type'] });
    const failure = api.failures.shift();
    if (failure === 403) return answer(res, 403, { error: 'domain not allowed' });
    if (failure !== undefined) return answer(res, failure, { error: 'try again' });
    const exp = Math.floor(Date.now() / 1000) + api.expiresInS;
    let dialogId: number;
    let issuedKey: string | undefined;
    if (body.visitor_key !== undefined) {
      const known = api.visitors.get(body.visitor_key);
      if (known === undefined) return answer(res, 404, { error: 'session not found' });
      dialogId = known;
    } else {
      dialogId = nextDialog++;
      issuedKey = `vk-${dialogId}`;
      api.visitors.set(issuedKey, dialogId);
    }
    const token = fakeJwt({ type: 'widget', dialog_id: dialogId, n: api.requests.length, exp });
    answer(res, 201, { token, expires_at: new Date(exp * 1000).toISOString(), dialog_id: dialogId, visitor_key: issuedKey });
  };
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await server.close();
});

/** A Web Storage look-alike over a Map, like `localStorage`. */
function memoryStorage(initial: Record<string, string> = {}): VisitorKeyStorage & { map: Map<string, string> } {
  const map = new Map(Object.entries(initial));
  return { map, getItem: (k) => map.get(k) ?? null, setItem: (k, v) => void map.set(k, v) };
}

function widgetClient(session: WidgetSession, dialogId: number): { client: DialogClient; states: ClientState[] } {
  const client = new DialogClient({ url: server.wsUrl, kind: 'widget', dialogId, getToken: session.getToken, WebSocket, backoffBaseMs: 50, soonJitterMs: 50 });
  clients.push(client);
  const states: ClientState[] = [];
  client.on('state', (s) => states.push(s));
  client.connect();
  return { client, states };
}

describe('WidgetSession', () => {
  it('creates a session, keeps the visitor key, and a widget client connects and renews with it', async () => {
    const storage = memoryStorage();
    const session = new WidgetSession({ apiUrl: `${server.httpUrl}/`, assistantId: 3, parentOrigin: 'https://shop.example.com', storage });
    const first = await session.get();
    expect(api.requests[0]).toEqual({ body: { assistant_id: 3, parent_origin: 'https://shop.example.com' }, idempotencyKey: expect.stringMatching(/^[\w-]{8,}$/), contentType: 'application/json' });
    expect(first).toMatchObject({ dialogId: 123, visitorKey: 'vk-123' });
    expect(first.expiresAt! - Date.now()).toBeGreaterThan(890_000);
    expect(storage.map.get('replyx.visitor_key.3')).toBe('vk-123');

    const { client } = widgetClient(session, first.dialogId);
    const conn = await server.next();
    await client.opened();
    expect(conn.url.pathname).toBe('/ws/widget/dialogs/123');
    expect(conn.token).toBe(first.token);
    expect(api.requests).toHaveLength(1);
    conn.events('1732780000000-0');
    await vi.waitFor(() => expect(client.lastEventId).toBe('1732780000000-0'));

    conn.close(4001, 'token expired');
    const renewed = await server.next();
    expect(api.requests).toHaveLength(2);
    expect(api.requests[1]!.body).toEqual({ assistant_id: 3, parent_origin: 'https://shop.example.com', visitor_key: 'vk-123' });
    expect(renewed.token).toBe(session.current!.token);
    expect(renewed.token).not.toBe(first.token);
    expect(renewed.url.searchParams.get('since')).toBe('1732780000000-0');
    await client.opened();
  });

  it('a later page load resumes the dialog through the stored visitor key', async () => {
    const storage = memoryStorage();
    await new WidgetSession({ apiUrl: server.httpUrl, assistantId: 3, storage }).get();
    const again = await new WidgetSession({ apiUrl: server.httpUrl, assistantId: 3, storage }).get();
    expect(again.dialogId).toBe(123);
    expect(api.requests[1]!.body.visitor_key).toBe('vk-123');
  });

  it('serves the cached token until renewBeforeMs before expiry, shares one request among concurrent callers', async () => {
    const session = new WidgetSession({ apiUrl: server.httpUrl, assistantId: 3, renewBeforeMs: 60_000 });
    const [a, b] = await Promise.all([session.get(), session.get()]);
    expect(a).toBe(b);
    expect(await session.get()).toBe(a);
    expect(await session.authorization()).toBe(`Bearer ${a.token}`);
    expect(api.requests).toHaveLength(1);
    await session.get({ fresh: true });
    expect(api.requests).toHaveLength(2);

    api.expiresInS = 30; // less than renewBeforeMs: every use renews
    const short = await session.get({ fresh: true });
    expect(await session.get()).not.toBe(short);
    expect(api.requests).toHaveLength(4);
  });

  it('keeps one Idempotency-Key across retries of a failed creation and takes a new one afterwards', async () => {
    const session = new WidgetSession({ apiUrl: server.httpUrl, assistantId: 3 });
    api.failures.push(503);
    const error = await session.get().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ReplyxClientError);
    expect(error).toMatchObject({ code: 'RPX_WIDGET_SESSION', status: 503, closeCode: undefined });
    await session.get();
    await session.get({ fresh: true });
    const [failed, retried, next] = api.requests.map((r) => r.idempotencyKey);
    expect(retried).toBe(failed);
    expect(next).not.toBe(retried);
  });

  it('a refused origin (403) stops the widget client with 4003 and does not open a socket', async () => {
    const session = new WidgetSession({ apiUrl: server.httpUrl, assistantId: 3, parentOrigin: 'https://evil.example.net' });
    api.failures.push(403);
    const { client, states } = widgetClient(session, 123);
    await expect(client.opened()).rejects.toMatchObject({ closeCode: 4003 });
    const closed = states.at(-1) as Extract<ClientState, { state: 'closed' }>;
    expect(closed).toMatchObject({ state: 'closed', code: 4003, terminal: true, reason: 'RPX_WIDGET_SESSION: the API refused the widget session with HTTP 403: domain not allowed' });
    expect(closed.error).toMatchObject({ status: 403 });
    expect(server.connections).toHaveLength(0);
  });

  it('a transient API failure is retried by the client with backoff', async () => {
    const session = new WidgetSession({ apiUrl: server.httpUrl, assistantId: 3 });
    api.failures.push(502, 429);
    const { client, states } = widgetClient(session, 123);
    await client.opened();
    expect(states.filter((s) => s.state === 'reconnecting')).toHaveLength(2);
    expect(api.requests).toHaveLength(3);
  });

  it('a stale visitor key starts a new dialog; an open client of the old dialog stops with 4004', async () => {
    const storage = memoryStorage({ 'replyx.visitor_key.3': 'vk-forgotten' });
    const session = new WidgetSession({ apiUrl: server.httpUrl, assistantId: 3, storage });
    const first = await session.get();
    expect(api.requests.map((r) => r.body.visitor_key)).toEqual(['vk-forgotten', undefined]);
    expect(first.dialogId).toBe(123);
    expect(storage.map.get('replyx.visitor_key.3')).toBe('vk-123');

    const { client, states } = widgetClient(session, first.dialogId);
    const conn = await server.next();
    await client.opened();
    api.visitors.clear(); // the API lost the visitor: a renewal now lands in a new dialog
    conn.close(4001, 'token expired');
    await vi.waitFor(() => expect(states.at(-1)).toMatchObject({ state: 'closed', code: 4004, terminal: true }));
    expect(session.current!.dialogId).toBe(124);
    expect(server.connections).toHaveLength(1);
  });

  it('rejects bad options with the option named', () => {
    expect(() => new WidgetSession({ apiUrl: 'chat.example.com', assistantId: 3 })).toThrow('RPX_CLIENT_OPTIONS: apiUrl: must be an absolute http(s) URL');
    expect(() => new WidgetSession({ apiUrl: 'ws://chat.example.com', assistantId: 3 })).toThrow('apiUrl: must be an http:// or https:// URL');
    expect(() => new WidgetSession({ apiUrl: server.httpUrl, assistantId: 0 })).toThrow('assistantId: must be a positive whole number (got 0)');
  });
});
