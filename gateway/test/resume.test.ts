import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { sharedRedisUrl } from '../../test/services.js';
import { RedisPublisher } from '../src/broker/publisher.js';
import { TestClient, adminToken, createAccessDatabase, eventually, httpPublish, startGateway, testConfig, type AccessDatabase, type TestGateway } from './harness.js';

// since=ID: replay after ID, then live, with no gap and no duplicate — including events that
// arrive while the replay is running; an id older than the history gives {"type":"resync"}.

let db: AccessDatabase;
let gw: TestGateway;
let mem: TestGateway;
let redis: Redis;
let publisher: RedisPublisher;
let token: string;

beforeAll(async () => {
  db = await createAccessDatabase();
  gw = await startGateway(testConfig({ databaseUrl: db.url, broker: 'redis', redisUrl: sharedRedisUrl() }));
  mem = await startGateway(testConfig({ databaseUrl: db.url, broker: 'memory', historyLength: 5 }));
  redis = new Redis(sharedRedisUrl());
  publisher = new RedisPublisher(redis, { historyLength: 1000, historyTtlS: 600 });
  token = await adminToken(db.a.userId);
});

afterAll(async () => {
  await gw?.stop();
  await mem?.stop();
  redis?.disconnect();
});

const url = (g: TestGateway, dialog: number, since?: string) => `${g.ws}/ws/dialogs/${dialog}?token=${token}${since ? `&since=${since}` : ''}`;

async function publishMany(dialog: number, n: number, p = publisher): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i += 1) ids.push(await p.publish({ dialogId: dialog, type: 'message:new', data: { i } }));
  return ids;
}

describe('resume with since', () => {
  it('replays only the events after since, in order, then goes live (no gap)', async () => {
    const dialog = db.a.dialogs[0]!;
    const ids = await publishMany(dialog, 10);
    const c = new TestClient(url(gw, dialog, ids[3]));
    await c.ready();
    await c.waitFor((f) => f.json.id === ids[9]);
    const live = await publisher.publish({ dialogId: dialog, type: 'message:new', data: { live: true } });
    await c.waitFor((f) => f.json.id === live);
    expect(c.events().map((f) => f.json.id)).toEqual([...ids.slice(4), live]);
    expect(c.frames.some((f) => f.json.type === 'resync')).toBe(false);
    await c.close();
  });

  it('since = the newest id replays nothing and delivers live events once', async () => {
    const dialog = db.a.dialogs[0]!;
    const [last] = await publishMany(dialog, 1);
    const c = new TestClient(url(gw, dialog, last));
    await c.ready();
    await eventually(() => gw.gateway.hub.has(dialog));
    const live = await publisher.publish({ dialogId: dialog, type: 'x', data: null });
    await c.waitFor((f) => f.json.id === live);
    await new Promise((r) => setTimeout(r, 100));
    expect(c.events().map((f) => f.json.id)).toEqual([live]);
    await c.close();
  });

  it('an id older than the retained history gives resync, then live events', async () => {
    const dialog = db.a.dialogs[1]!;
    const short = new RedisPublisher(redis, { historyLength: 5, historyTtlS: 600 });
    const ids = await publishMany(dialog, 12, short);
    const c = new TestClient(url(gw, dialog, ids[2]));
    await c.waitFor((f) => f.json.type === 'resync');
    const live = await short.publish({ dialogId: dialog, type: 'message:new', data: {} });
    await c.waitFor((f) => f.json.id === live);
    expect(c.events().map((f) => f.json.id)).toEqual([live]);
    await c.close();
  });

  it('a missing (expired) history stream gives resync', async () => {
    const dialog = db.b.dialogs[0]!;
    await redis.del(`replyx:dialog:${dialog}:events`);
    const c = new TestClient(`${gw.ws}/ws/dialogs/${dialog}?token=${await adminToken(db.b.userId)}&since=1700000000000-0`);
    await c.waitFor((f) => f.json.type === 'resync');
    await c.close();
  });

  it('events published during the replay arrive exactly once, in id order', async () => {
    const dialog = db.a.dialogs[0]!;
    const before = await publishMany(dialog, 300);
    const since = before[10]!;
    // Keep publishing while clients connect and replay: their replays overlap live traffic.
    let publishing = true;
    const during: string[] = [];
    const pump = (async () => {
      while (publishing) {
        const batch = await Promise.all(Array.from({ length: 20 }, (_, i) => publisher.publish({ dialogId: dialog, type: 'burst', data: { i } })));
        during.push(...batch);
      }
    })();
    const clients: TestClient[] = [];
    for (let i = 0; i < 5; i += 1) {
      clients.push(new TestClient(url(gw, dialog, since)));
      await new Promise((r) => setTimeout(r, 15));
    }
    await Promise.all(clients.map((c) => c.ready()));
    await new Promise((r) => setTimeout(r, 100));
    publishing = false;
    await pump;
    const expected = [...before.slice(11), ...during];
    for (const c of clients) {
      await c.waitFor((f) => f.json.id === expected.at(-1), 1, 10_000);
      const got = c.events().map((f) => f.json.id);
      expect(new Set(got).size).toBe(got.length);
      expect(got).toEqual(expected);
    }
    await Promise.all(clients.map((c) => c.close()));
  });

  it('bad resume input closes with 4009 and the reason, never 1011: malformed, parts above 2^64-1, ahead of the stream', async () => {
    const dialog = db.a.dialogs[0]!;
    const [newest] = await publishMany(dialog, 1);
    const [ms] = newest!.split('-');
    const cases: [string, RegExp][] = [
      ['abc', /^since must be an event id such as/],
      ['99999999999999999999-0', /^since has a part above 18446744073709551615/],
      ['1-18446744073709551616', /^since has a part above 18446744073709551615/],
      [`${Number(ms) + 3_600_000}-0`, /^since is ahead of the dialog's newest event$/],
      ['18446744073709551615-18446744073709551615', /^since is ahead of the dialog's newest event$/],
    ];
    for (const [since, reason] of cases) {
      const c = new TestClient(`${url(gw, dialog)}&since=${since}`);
      const closed = await c.closed;
      expect({ since, code: closed.code }).toEqual({ since, code: 4009 });
      expect(closed.reason).toMatch(reason);
    }
    const text = await gw.gateway.metrics.render();
    expect(text).toMatch(/^replyx_gateway_resumes_total\{outcome="ahead"\} [2-9]/m);
    // The same id parts within range and not ahead still resume.
    const ok = new TestClient(url(gw, dialog, newest));
    await ok.ready();
    await ok.close();
  });

  it('with BROKER=memory: replay after since, and resync beyond the capped history', async () => {
    const dialog = db.a.dialogs[1]!;
    const ids: string[] = [];
    for (let i = 0; i < 8; i += 1) {
      const r = await httpPublish(mem.base, { dialog_id: dialog, type: 'message:new', data: { i } });
      expect(r.status).toBe(202);
      ids.push(String(r.body.id));
    }
    const ok = new TestClient(url(mem, dialog, ids[4]));
    await ok.waitFor((f) => f.json.id === ids[7]);
    expect(ok.events().map((f) => f.json.id)).toEqual(ids.slice(5));
    const gap = new TestClient(url(mem, dialog, ids[0]));
    await gap.waitFor((f) => f.json.type === 'resync');
    const r = await httpPublish(mem.base, { dialog_id: dialog, type: 'message:new', data: 'live' });
    for (const c of [ok, gap]) await c.waitFor((f) => f.json.id === r.body.id);
    expect(gap.events().map((f) => f.json.id)).toEqual([r.body.id]);
    await Promise.all([ok.close(), gap.close()]);
    const ahead = new TestClient(url(mem, dialog, `${Number(String(r.body.id).split('-')[0]) + 1000}-0`));
    expect(await ahead.closed).toEqual({ code: 4009, reason: "since is ahead of the dialog's newest event" });
  });
});
