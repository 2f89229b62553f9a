import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { freePort } from '../../infra/targets/local/ports.js';
import { startRedis, type ServiceProcess } from '../../infra/targets/local/processes.js';
import { RedisPublisher } from '../src/broker/publisher.js';
import { PUBLISH_KEY, TestClient, adminToken, createAccessDatabase, eventually, httpPublish, siteToken, startGateway, testConfig, type AccessDatabase, type TestGateway } from './harness.js';

// Publishing over HTTP (every status), /health, and a Redis that dies and comes back: 503
// while down, then resubscribed and delivering. Uses its own Redis so it can kill it.

let dir: string;
let redisPort: number;
let redisProc: ServiceProcess | undefined;
let db: AccessDatabase;
let gw: TestGateway;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'replyx-gw-redis-'));
  await chmod(dir, 0o755);
  redisPort = await freePort();
  redisProc = await startRedis({ dir, port: redisPort });
  db = await createAccessDatabase();
  gw = await startGateway(testConfig({ databaseUrl: db.url, broker: 'redis', redisUrl: `redis://127.0.0.1:${redisPort}` }));
});

afterAll(async () => {
  await gw?.stop();
  await redisProc?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('POST /internal/publish', () => {
  it('202 with the stream id; the event is stored in the history stream and delivered', async () => {
    const dialog = db.a.dialogs[0]!;
    const c = new TestClient(`${gw.ws}/ws/dialogs/${dialog}?token=${await adminToken(db.a.userId)}`);
    await c.ready();
    await eventually(() => gw.gateway.hub.has(dialog));
    const res = await httpPublish(gw.base, { dialog_id: dialog, type: 'message:new', data: { text: 'hi', n: [1, 2] } });
    expect(res.status).toBe(202);
    expect(res.body.id).toMatch(/^\d+-\d+$/);
    const [ev] = await c.waitFor((f) => f.json.id === res.body.id);
    expect(ev!.json).toMatchObject({ type: 'message:new', dialog_id: dialog, data: { text: 'hi', n: [1, 2] } });
    const redis = new Redis(`redis://127.0.0.1:${redisPort}`);
    const stored = await redis.xrange(`replyx:dialog:${dialog}:events`, String(res.body.id), String(res.body.id));
    redis.disconnect();
    expect(stored).toHaveLength(1);
    await c.close();
  });

  it('an idempotency_key publishes once: the repeat answers 202 with the first id', async () => {
    const dialog = db.a.dialogs[1]!;
    const body = { dialog_id: dialog, type: 'message:new', data: { text: 'once' }, idempotency_key: 'client-7:msg-1' };
    const first = await httpPublish(gw.base, body);
    const again = await httpPublish(gw.base, body);
    expect(first.status).toBe(202);
    expect(again).toMatchObject({ status: 202, body: { id: first.body.id } });
    const redis = new Redis(`redis://127.0.0.1:${redisPort}`);
    const stored = await redis.xrange(`replyx:dialog:${dialog}:events`, '-', '+');
    redis.disconnect();
    expect(stored.filter(([, f]) => f.join(' ').includes('once'))).toHaveLength(1);
  });

  it('400 with the reason, 401 for a bad key, 405, 413', async () => {
    const bad = [
      [{ type: 'm', data: 1 }, /dialog_id/],
      [{ dialog_id: -1, type: 'm', data: 1 }, /dialog_id: must be positive/],
      [{ dialog_id: 5, type: 'has space', data: 1 }, /type/],
      [{ dialog_id: 5, type: 'm' }, /data: is required/],
      [{ dialog_id: 5, type: 'm', data: 1, audience: ['operators'] }, /audience/],
      [{ dialog_id: 5, type: 'm', data: 1, idempotency_key: 'with space' }, /idempotency_key: must be 1-200 characters/],
      ['{not json', /JSON/],
    ] as const;
    for (const [body, reason] of bad) {
      const res = await httpPublish(gw.base, body);
      expect(res.status).toBe(400);
      expect(String(res.body.error)).toMatch(reason);
    }
    expect((await httpPublish(gw.base, { dialog_id: 5, type: 'm', data: 1 }, 'wrong-key-0123456789abcdef')).status).toBe(401);
    expect((await httpPublish(gw.base, { dialog_id: 5, type: 'm', data: 1 }, null)).status).toBe(401);
    expect((await fetch(`${gw.base}/internal/publish`)).status).toBe(405);
    const huge = await httpPublish(gw.base, { dialog_id: 5, type: 'm', data: 'x'.repeat(300 * 1024) });
    expect(huge.status).toBe(413);
  });
});

describe('Redis restarted mid-test', () => {
  it('/health 503 and publish 503 while Redis is down; resubscribed and delivering after', async () => {
    const dialog = db.a.dialogs[1]!;
    const admin = new TestClient(`${gw.ws}/ws/dialogs/${dialog}?token=${await adminToken(db.a.userId)}`);
    const site = new TestClient(`${gw.ws}/ws/site/dialogs/${dialog}?site_token=${await siteToken(db.a.userId, db.a.assistantId)}`);
    await Promise.all([admin.ready(), site.ready()]);
    await eventually(() => gw.gateway.hub.dialogCounts(dialog).site === 1);
    const health = await fetch(`${gw.base}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'ok', redis: 'up', db: 'up' });
    const first = await httpPublish(gw.base, { dialog_id: dialog, type: 'message:new', data: 1 });
    await admin.waitFor((f) => f.json.id === first.body.id);

    await redisProc!.stop();
    await eventually(async () => (await fetch(`${gw.base}/health`)).status === 503, 5000, '/health 503');
    const down = await fetch(`${gw.base}/health`);
    expect(await down.json()).toMatchObject({ status: 'unavailable', redis: 'down', db: 'up' });
    const refused = await httpPublish(gw.base, { dialog_id: dialog, type: 'message:new', data: 2 });
    expect(refused.status).toBe(503);
    // Connections stay open while Redis is away.
    expect(gw.gateway.hub.dialogCounts(dialog)).toMatchObject({ admin: 1, site: 1 });
    const whileDown = await gw.gateway.metrics.render();
    expect(whileDown).toContain('replyx_gateway_dependency_up{dependency="redis"} 0');
    expect(whileDown).toMatch(/^replyx_gateway_redis_roundtrip_seconds nan$/im);

    redisProc = await startRedis({ dir, port: redisPort });
    await eventually(async () => (await fetch(`${gw.base}/health`)).status === 200, 10_000, '/health 200 again');
    // Published by a backend straight to Redis (Lua), right after it came back.
    const redis = new Redis(`redis://127.0.0.1:${redisPort}`);
    const publisher = new RedisPublisher(redis);
    let delivered: string | undefined;
    await eventually(
      async () => {
        const id = await publisher.publish({ dialogId: dialog, type: 'message:new', data: 3 });
        await new Promise((r) => setTimeout(r, 100));
        if (admin.frames.some((f) => f.json.id === id)) delivered = id;
        return delivered !== undefined;
      },
      10_000,
      'delivery after the restart',
    );
    await site.waitFor((f) => f.json.id === delivered);
    const viaHttp = await httpPublish(gw.base, { dialog_id: dialog, type: 'message:new', data: 4 });
    expect(viaHttp.status).toBe(202);
    await admin.waitFor((f) => f.json.id === viaHttp.body.id);
    redis.disconnect();
    // The restarted Redis kept no history (no persistence): clients were told to resync.
    expect(admin.frames.some((f) => f.json.type === 'resync')).toBe(true);
    const after = await gw.gateway.metrics.render();
    expect(after).toMatch(/^replyx_gateway_broker_reconnects_total [1-9]/m);
    expect(after).toMatch(/^replyx_gateway_resyncs_total\{cause="broker_gap"\} [1-9]/m);
    expect(after).toContain('replyx_gateway_dependency_up{dependency="redis"} 1');
    // Nothing delivered twice.
    const ids = admin.events().map((f) => f.json.id);
    expect(new Set(ids).size).toBe(ids.length);
    await Promise.all([admin.close(), site.close()]);
  });
});

describe('shutdown while Redis is away', () => {
  it('drains and closes without waiting for Redis to come back', async () => {
    const ownDir = await mkdtemp(path.join(os.tmpdir(), 'replyx-gw-redis-down-'));
    await chmod(ownDir, 0o755);
    const port = await freePort();
    const own = await startRedis({ dir: ownDir, port });
    const lonely = await startGateway(testConfig({ databaseUrl: db.url, broker: 'redis', redisUrl: `redis://127.0.0.1:${port}`, instanceId: 'gw-lonely' }));
    try {
      const c = new TestClient(`${lonely.ws}/ws/dialogs/${db.a.dialogs[0]}?token=${await adminToken(db.a.userId)}`);
      await c.ready();
      await own.stop();
      await eventually(async () => (await fetch(`${lonely.base}/health`)).status === 503, 5000, 'Redis seen down');
      const started = Date.now();
      await lonely.gateway.close();
      expect(Date.now() - started).toBeLessThan(5000);
      expect((await c.closed).code).toBe(4200);
    } finally {
      await rm(ownDir, { recursive: true, force: true });
    }
  });
});

describe('logs', () => {
  it('never contain a token, site token or key', async () => {
    const t = await adminToken(db.a.userId);
    const s = await siteToken(db.a.userId, db.a.assistantId);
    const ok = new TestClient(`${gw.ws}/ws/dialogs/${db.a.dialogs[0]}?token=${t}`);
    const refused = new TestClient(`${gw.ws}/ws/site/dialogs/${db.b.dialogs[0]}?site_token=${s}&since=bad`);
    const wrongDialog = new TestClient(`${gw.ws}/ws/site/dialogs/${db.b.dialogs[0]}?site_token=${s}`);
    await ok.ready();
    await refused.closed;
    await wrongDialog.closed;
    await httpPublish(gw.base, { dialog_id: 1, type: 'm', data: 1 }, 'wrong-key-0123456789abcdef');
    await fetch(`${gw.base}/api/debug/websocket/status`, { headers: { 'x-debug-token': 'wrong-debug-token-0123456789' } });
    await ok.close();
    expect(gw.logs.length).toBeGreaterThan(5);
    for (const secret of [t, s, PUBLISH_KEY, t.split('.')[2]!, s.split('.')[2]!]) {
      expect(gw.logs.filter((l) => l.includes(secret))).toEqual([]);
    }
    expect(gw.logs.some((l) => l.includes('site_token=[redacted]'))).toBe(true);
  });
});
