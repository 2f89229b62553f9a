import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createTestDatabase, sharedRedisUrl } from '../../../test/services.js';
import { freePort, waitUntil } from '../../../infra/targets/local/ports.js';
import { configFromEnv } from '../src/config.js';
import { demoSiteTokens, signAdminToken, signSiteToken } from '../src/demo.js';
import { createLogger } from '../src/log.js';
import { loadMigrations, migrate } from '../src/migrate.js';
import { seedDemoData } from '../src/seed.js';
import { startWorker, type BackendWorker } from '../src/worker.js';

// The backend against the suite's real Postgres and Redis: one in-process worker for the API
// and legacy /ws/, and the real cluster entry point for health and migrations.

const SECRET = 'test-secret-0123456789abcdef';

let databaseUrl: string;
let worker: BackendWorker;
let base: string;
let redis: Redis;

beforeAll(async () => {
  databaseUrl = await createTestDatabase('backend');
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  await migrate(client, await loadMigrations());
  await seedDemoData(client);
  await client.end();
  const config = configFromEnv({ DATABASE_URL: databaseUrl, REDIS_URL: sharedRedisUrl(), JWT_SECRET: SECRET, LOG_LEVEL: 'silent' });
  worker = await startWorker(config, createLogger('silent'), 0);
  base = `http://127.0.0.1:${worker.port}`;
  redis = new Redis(sharedRedisUrl());
});

afterAll(async () => {
  await worker?.close();
  redis?.disconnect();
});

async function post(path: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

function openSocket(path: string, headers: Record<string, string> = {}): Promise<{ ws: WebSocket; frames: Record<string, unknown>[]; closed: Promise<number> }> {
  const ws = new WebSocket(`ws://127.0.0.1:${worker.port}${path}`, { headers });
  const frames: Record<string, unknown>[] = [];
  const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    ws.on('message', (d) => {
      const frame = JSON.parse(d.toString()) as Record<string, unknown>;
      frames.push(frame);
      if (frame.type === 'connected') resolve({ ws, frames, closed });
    });
    ws.on('error', reject);
    void closed.then((code) => resolve({ ws, frames, closed: Promise.resolve(code) }));
  });
}

describe('HTTP API', () => {
  it('stores a site message, publishes it through Redis and returns the event id', async () => {
    const [site1] = await demoSiteTokens(SECRET);
    const sub = new Redis(sharedRedisUrl());
    const got = new Promise<string>((resolve) => sub.on('message', (_c, m) => resolve(m)));
    await sub.subscribe('replyx:dialog:100');
    const r = await post(`/api/site/dialogs/100/messages?site_token=${site1!.token}`, { text: 'Test message' });
    expect(r.status).toBe(201);
    const message = r.json.message as Record<string, unknown>;
    expect(message).toMatchObject({ dialog_id: 100, sender: 'site', text: 'Test message' });
    expect(r.json.event_id).toMatch(/^\d+-\d+$/);
    const wire = await got;
    expect(wire.startsWith(`${String(r.json.event_id)}||`)).toBe(true);
    expect(JSON.parse(wire.slice(wire.indexOf('|', wire.indexOf('|') + 1) + 1))).toMatchObject({ type: 'message:new', dialog_id: 100, data: { text: 'Test message' } });
    sub.disconnect();
  });

  it('accepts the operator JWT and the widget origin, and lists history since an id', async () => {
    const admin = await signAdminToken(SECRET);
    const a = await post('/api/dialogs/123/messages', { text: 'from operator' }, { authorization: `Bearer ${admin}` });
    expect(a.status).toBe(201);
    const w = await post('/api/widget/dialogs/123/messages?assistant_id=3&parent_origin=https://shop.example.com', { text: 'from widget' });
    expect(w.status).toBe(201);
    const since = Number((a.json.message as { id: number }).id) - 1;
    const res = await fetch(`${base}/api/dialogs/123/messages?since=${since}`, { headers: { authorization: `Bearer ${admin}` } });
    const body = (await res.json()) as { messages: { text: string; sender: string; event_id: string }[] };
    expect(body.messages.map((m) => [m.sender, m.text])).toEqual([['operator', 'from operator'], ['user', 'from widget']]);
    expect(body.messages.every((m) => /^\d+-\d+$/.test(m.event_id))).toBe(true);
  });

  it('answers bad input with 400 and the reason, and refusals with 401/403/404', async () => {
    const [site1, site2] = await demoSiteTokens(SECRET);
    const bad = await post(`/api/site/dialogs/100/messages?site_token=${site1!.token}`, { text: '' });
    expect(bad).toMatchObject({ status: 400, json: { error: { code: 'BAD_REQUEST' } } });
    expect(String((bad.json.error as { message: string }).message)).toContain('text');
    expect((await post(`/api/site/dialogs/100/messages?site_token=${site1!.token}`, '{nope')).status).toBe(400);
    expect((await post(`/api/site/dialogs/abc/messages?site_token=${site1!.token}`, { text: 'x' })).status).toBe(400);
    expect((await post(`/api/site/dialogs/100/messages?site_token=${site1!.token}`, { text: 'x', extra: 1 })).status).toBe(400);
    expect((await post('/api/site/dialogs/100/messages?site_token=garbage', { text: 'x' })).json).toMatchObject({ error: { code: 'UNAUTHORIZED' } });
    expect((await post(`/api/site/dialogs/100/messages?site_token=${await signSiteToken('another-secret-0123456789', 1, 3)}`, { text: 'x' })).status).toBe(401);
    expect((await post(`/api/site/dialogs/100/messages?site_token=${site2!.token}`, { text: 'x' })).status).toBe(404);
    expect((await post('/api/site/dialogs/999/messages?site_token=' + site1!.token, { text: 'x' })).status).toBe(404);
    expect((await post('/api/dialogs/123/messages', { text: 'x' })).status).toBe(401);
    expect((await post('/api/dialogs/123/messages', { text: 'x' }, { authorization: `Bearer ${await signAdminToken(SECRET, 2)}` })).status).toBe(404);
    expect((await post('/api/widget/dialogs/123/messages?assistant_id=3&parent_origin=https://evil.test', { text: 'x' })).json).toMatchObject({ error: { code: 'ORIGIN_FORBIDDEN' } });
    expect((await post('/api/widget/dialogs/123/messages?assistant_id=3', { text: 'x' })).status).toBe(403);
    expect((await post('/api/widget/dialogs/123/messages?assistant_id=3', { text: 'x' }, { origin: 'http://localhost:8080' })).status).toBe(201);
    expect((await post('/api/widget/dialogs/123/messages?assistant_id=x', { text: 'x' }, { origin: 'http://localhost' })).status).toBe(400);
    const big = await post(`/api/site/dialogs/100/messages?site_token=${site1!.token}`, { text: 'x'.repeat(70 * 1024) });
    expect(big).toMatchObject({ status: 413, json: { error: { code: 'PAYLOAD_TOO_LARGE' } } });
    expect((await fetch(`${base}/api/nothing`)).status).toBe(404);
    expect((await fetch(`${base}/api/site/dialogs/100/messages`, { method: 'DELETE' })).status).toBe(405);
  });

  it('reports health with db and redis state', async () => {
    const res = await fetch(`${base}/health`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'ok', pid: process.pid, workers: 4, db: 'ok', redis: 'ok' });
  });
});

describe('legacy /ws/ mode', () => {
  it('delivers to this worker’s admin, widget and site sockets on the dialog only', async () => {
    const [site1] = await demoSiteTokens(SECRET);
    const admin = await openSocket(`/ws/dialogs/100?token=${await signAdminToken(SECRET)}`);
    const widget = await openSocket('/ws/widget/dialogs/100?assistant_id=3&parent_origin=http://localhost:8080');
    const site = await openSocket(`/ws/site/dialogs/100?site_token=${site1!.token}`);
    const other = await openSocket(`/ws/dialogs/123?token=${await signAdminToken(SECRET)}`);
    expect(admin.frames[0]).toMatchObject({ type: 'connected', server: 'backend', worker: process.pid });
    const r = await post(`/api/site/dialogs/100/messages?site_token=${site1!.token}`, { text: 'legacy hello' });
    for (const c of [admin, widget, site]) {
      await waitUntil(async () => c.frames.length === 2, 2000);
      expect(c.frames[1]).toMatchObject({ id: r.json.event_id, type: 'message:new', dialog_id: 100, data: { text: 'legacy hello' } });
    }
    admin.ws.send('{"type":"ping"}');
    await waitUntil(async () => admin.frames.length === 3, 2000);
    expect(admin.frames[2]).toEqual({ type: 'pong' });
    expect(other.frames).toHaveLength(1);
    for (const c of [admin, widget, site, other]) c.ws.close();
  });

  it('closes refused connections with the gateway’s codes', async () => {
    const forbidden = await openSocket('/ws/widget/dialogs/123?assistant_id=3&parent_origin=https://evil.test');
    expect(await forbidden.closed).toBe(4003);
    expect(await (await openSocket('/ws/dialogs/123?token=nope')).closed).toBe(4001);
    expect(await (await openSocket(`/ws/dialogs/999?token=${await signAdminToken(SECRET)}`)).closed).toBe(4004);
    expect(await (await openSocket('/ws/widget/dialogs/200?assistant_id=3', { origin: 'http://localhost' })).closed).toBe(4004);
  });
});

describe('cluster entry point', () => {
  let child: ChildProcess | undefined;
  afterAll(async () => {
    if (child && child.exitCode === null) {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
  });

  it('migrates a fresh database once, seeds idempotently and spreads requests over its workers', { timeout: 120_000 }, async () => {
    const url = await createTestDatabase('cluster');
    const port = await freePort();
    const env = { ...process.env, PORT: String(port), UVICORN_WORKERS: '2', DATABASE_URL: url, REDIS_URL: sharedRedisUrl(), JWT_SECRET: SECRET, LOG_LEVEL: 'warn' };
    const entry = fileURLToPath(new URL('../src/main.ts', import.meta.url));
    const run = () => spawn(process.execPath, ['--import', 'tsx', entry], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    const healthy = async () => (await fetch(`http://127.0.0.1:${port}/health`)).ok;
    for (let round = 0; round < 2; round += 1) {
      child = run();
      expect(await waitUntil(healthy, 20_000, 100)).toBe(true);
      // Health answers as soon as one worker listens; the other may still be loading.
      const pids = new Set<number>();
      const bothAnswer = await waitUntil(async () => {
        const h = (await (await fetch(`http://127.0.0.1:${port}/health`, { headers: { connection: 'close' } })).json()) as { pid: number; workers: number };
        expect(h.workers).toBe(2);
        pids.add(h.pid);
        return pids.size === 2;
      }, 30_000, 50);
      expect(bothAnswer).toBe(true);
      child.kill('SIGTERM');
      const [code] = (await once(child, 'exit')) as [number | null];
      expect(code).toBe(0);
    }
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const versions = await client.query('SELECT version FROM schema_migrations ORDER BY version');
    expect(versions.rows.map((r: { version: number }) => r.version)).toEqual([1, 2]);
    const access = await client.query('SELECT dialog_id::int, assistant_id::int, user_id::int FROM replyx_dialog_access ORDER BY dialog_id');
    expect(access.rows).toEqual([
      { dialog_id: 100, assistant_id: 3, user_id: 1 },
      { dialog_id: 123, assistant_id: 3, user_id: 1 },
      { dialog_id: 200, assistant_id: 4, user_id: 1 },
      { dialog_id: 300, assistant_id: 5, user_id: 1 },
    ]);
    await client.end();
  });
});
