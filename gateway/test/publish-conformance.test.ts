import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sharedRedisUrl } from '../../test/services.js';
import { RedisPublisher } from '../src/broker/publisher.js';
import { dialogChannel, dialogIdempotencyKey, dialogStream } from '../src/broker/protocol.js';
import { parsePublishBody } from '../src/http/publish-request.js';
import { createAccessDatabase, httpPublish, startGateway, testConfig, type TestGateway } from './harness.js';

// The publish conformance fixture (test/fixtures/publish-conformance.json) against the TypeScript
// publisher behind the gateway's body schema and against POST /internal/publish. The Python
// package runs the same file (python/replyx_publish/tests/test_conformance.py), so a publisher
// that drifts from the others fails the build.

/** One fixture case: a body and either the frame clients get (with the channel's audience CSV) or the error. */
interface Case {
  readonly name: string;
  readonly body: unknown;
  readonly frame?: Record<string, unknown>;
  readonly audience?: string;
  readonly error?: string;
  /** Publish twice with the same idempotency key: the second answers the first id and publishes nothing. */
  readonly repeat?: boolean;
}

const FIXTURE = JSON.parse(readFileSync(new URL('../../test/fixtures/publish-conformance.json', import.meta.url), 'utf8')) as { cases: Case[] };
const published = FIXTURE.cases.filter((c) => c.frame !== undefined);
const refused = FIXTURE.cases.filter((c) => c.error !== undefined);

/** Replaces the fixture's `{"$js": …}` markers with the JavaScript values they stand for. */
function revive(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(revive);
  if (value === null || typeof value !== 'object') return value;
  const o = value as Record<string, unknown>;
  if (typeof o.$js === 'string') {
    if (o.$js === 'NaN') return Number.NaN;
    if (o.$js === 'Infinity') return Number.POSITIVE_INFINITY;
    if (o.$js === '-Infinity') return Number.NEGATIVE_INFINITY;
    if (o.$js === 'Date') return new Date(String(o.iso));
    throw new Error(`unknown fixture marker ${o.$js}`);
  }
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, revive(v)]));
}

/** What clients of the dialog receive for one publish: the live frame, its audience, and the history copy. */
async function observe(redisUrl: string, dialogId: number, publish: () => Promise<string>): Promise<{ id: string; live: unknown; audience: string; stored: unknown; storedAudience: string }> {
  const sub = new Redis(redisUrl);
  const reader = new Redis(redisUrl);
  try {
    const messages: string[] = [];
    sub.on('message', (_channel: string, message: string) => messages.push(message));
    await sub.subscribe(dialogChannel(dialogId));
    const id = await publish();
    const deadline = Date.now() + 5000;
    let message: string | undefined;
    while (!(message = messages.find((m) => m.startsWith(`${id}|`))) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    if (!message) throw new Error(`no channel message for ${id}`);
    const [, audience, ...rest] = message.split('|');
    const [[, fields] = ['', []]] = await reader.xrange(dialogStream(dialogId), id, id);
    const stored = Object.fromEntries(Array.from({ length: fields.length / 2 }, (_, i) => [fields[2 * i], fields[2 * i + 1]]));
    return { id, live: JSON.parse(rest.join('|')), audience: audience!, stored: JSON.parse(`{"id":"${id}",${stored.body}}`), storedAudience: stored.aud! };
  } finally {
    sub.disconnect();
    reader.disconnect();
  }
}

/** The fixture's expectation for a published case. */
function expectFrame(c: Case, seen: Awaited<ReturnType<typeof observe>>): void {
  expect(seen.id).toMatch(/^\d+-\d+$/);
  const expected = { id: seen.id, ...c.frame, ts: expect.any(Number) };
  expect(seen.live).toEqual(expected);
  expect(seen.stored).toEqual(seen.live);
  expect(seen.audience).toBe(c.audience);
  expect(seen.storedAudience).toBe(c.audience);
}

/** Forgets the case's idempotency key (left by an earlier run or another runner within the window). */
async function forgetKey(body: Record<string, unknown>): Promise<void> {
  if (typeof body.idempotency_key === 'string') await redis.del(dialogIdempotencyKey(Number(body.dialog_id), body.idempotency_key));
}

/** A repeat of a published case: same id, nothing new in the history, no channel message. */
async function expectRepeat(c: Case, firstId: string, again: () => Promise<{ id: string; duplicate?: boolean }>): Promise<void> {
  const dialogId = Number((c.body as { dialog_id: number }).dialog_id);
  const before = await redis.xlen(dialogStream(dialogId));
  const second = await again();
  expect(second.id).toBe(firstId);
  if (second.duplicate !== undefined) expect(second.duplicate).toBe(true);
  expect(await redis.xlen(dialogStream(dialogId))).toBe(before);
}

let redisUrl: string;
let redis: Redis;
let publisher: RedisPublisher;
let gw: TestGateway;

beforeAll(async () => {
  // A database of its own on the shared Redis: ids are read back by id, so other files' traffic does not matter.
  redisUrl = `${sharedRedisUrl()}/7`;
  redis = new Redis(redisUrl);
  publisher = new RedisPublisher(redis);
  const db = await createAccessDatabase();
  gw = await startGateway(testConfig({ databaseUrl: db.url, broker: 'redis', redisUrl }));
});

afterAll(async () => {
  await gw?.stop();
  redis?.disconnect();
});

describe('publish conformance: TypeScript publisher', () => {
  it.each(published.map((c) => [c.name, c] as const))('publishes %s', async (_name, c) => {
    const body = c.body as Record<string, unknown>;
    // The schema accepts the body as JSON; the publisher gets the caller's own values (NaN, Date).
    const parsed = parsePublishBody(JSON.stringify(revive(body)));
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    const input = { ...parsed.input, data: revive(body.data) };
    await forgetKey(body);
    const seen = await observe(redisUrl, parsed.input.dialogId, () => publisher.publish(input));
    expectFrame(c, seen);
    if (c.repeat) await expectRepeat(c, seen.id, () => publisher.publishEvent(input));
  });

  it.each(refused.map((c) => [c.name, c] as const))('refuses %s', (_name, c) => {
    expect(parsePublishBody(JSON.stringify(revive(c.body)))).toEqual({ ok: false, reason: c.error });
  });
});

describe('publish conformance: POST /internal/publish', () => {
  it.each(published.map((c) => [c.name, c] as const))('publishes %s', async (_name, c) => {
    const dialogId = Number((c.body as { dialog_id: number }).dialog_id);
    await forgetKey(c.body as Record<string, unknown>);
    let status = 0;
    const seen = await observe(redisUrl, dialogId, async () => {
      const res = await httpPublish(gw.base, JSON.stringify(revive(c.body)));
      status = res.status;
      return String(res.body.id);
    });
    expect(status).toBe(202);
    expectFrame(c, seen);
    if (c.repeat) {
      await expectRepeat(c, seen.id, async () => {
        const res = await httpPublish(gw.base, JSON.stringify(revive(c.body)));
        expect(res.status).toBe(202);
        return { id: String(res.body.id) };
      });
    }
  });

  it.each(refused.map((c) => [c.name, c] as const))('refuses %s', async (_name, c) => {
    const res = await httpPublish(gw.base, JSON.stringify(revive(c.body)));
    expect(res).toEqual({ status: 400, body: { error: c.error } });
  });
});
