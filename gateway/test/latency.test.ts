import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { sharedRedisUrl } from '../../test/services.js';
import { RedisPublisher } from '../src/broker/publisher.js';
import { TestClient, adminToken, createAccessDatabase, eventually, siteToken, startGateway, testConfig, type AccessDatabase, type TestGateway } from './harness.js';

// Publish->send latency over 500 events, PRINTED (no timing assertion: targets belong to the
// benchmarks). Two views: from the event's ts (Redis TIME, ms resolution) to arrival, and from
// the publish call to arrival on a high-resolution clock.

let db: AccessDatabase;
let gw: TestGateway;
let redis: Redis;

beforeAll(async () => {
  db = await createAccessDatabase();
  gw = await startGateway(testConfig({ databaseUrl: db.url, broker: 'redis', redisUrl: sharedRedisUrl(), logLevel: 'warn' }));
  redis = new Redis(sharedRedisUrl());
});

afterAll(async () => {
  await gw?.stop();
  redis?.disconnect();
});

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;

describe('publish -> send latency', () => {
  it('measures p50/p99 over 500 events to 10 connections and prints them', async () => {
    const dialog = db.a.dialogs[0]!;
    const admin = await adminToken(db.a.userId);
    const site = await siteToken(db.a.userId, db.a.assistantId);
    const clients = Array.from({ length: 10 }, (_, i) =>
      i % 2 === 0 ? new TestClient(`${gw.ws}/ws/dialogs/${dialog}?token=${admin}`) : new TestClient(`${gw.ws}/ws/site/dialogs/${dialog}?site_token=${site}`),
    );
    await Promise.all(clients.map((c) => c.ready()));
    await eventually(() => gw.gateway.hub.dialogCounts(dialog).site === 5);
    const publisher = new RedisPublisher(redis);
    const probe = clients[0]!;
    const fromTs: number[] = [];
    const fromCall: number[] = [];
    for (let i = 0; i < 500; i += 1) {
      const t0 = performance.now();
      const before = probe.frames.length;
      const id = await publisher.publish({ dialogId: dialog, type: 'message:new', data: { i, text: 'latency probe' } });
      const [frame] = await probe.waitFor((f) => f.json.id === id);
      const arrivedHr = performance.now();
      fromCall.push(arrivedHr - t0);
      fromTs.push(frame!.at - Number(frame!.json.ts));
      expect(probe.frames.length).toBe(before + 1);
    }
    for (const c of clients) await c.waitFor((f) => f.json.type === 'message:new', 500);
    const a = [...fromTs].sort((x, y) => x - y);
    const b = [...fromCall].sort((x, y) => x - y);
    console.log(
      `[latency] 500 events x 10 connections: event ts -> client p50 ${pct(a, 50)} ms, p99 ${pct(a, 99)} ms, max ${a.at(-1)} ms; ` +
        `publish call -> client p50 ${pct(b, 50).toFixed(2)} ms, p99 ${pct(b, 99).toFixed(2)} ms, max ${b.at(-1)!.toFixed(2)} ms`,
    );
    const metrics = await (await fetch(`${gw.base}/metrics`)).text();
    expect(metrics).toMatch(/replyx_gateway_publish_to_send_seconds_count 500/);
    await Promise.all(clients.map((c) => c.close()));
  });
});
