import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { freePort } from '../../infra/targets/local/ports.js';
import { startRedis, type ServiceProcess } from '../../infra/targets/local/processes.js';
import { dialogIdempotencyKey, dialogStream } from '../src/broker/protocol.js';
import { LIBRARY_NAME, LIBRARY_SOURCE, LIBRARY_VERSION, LibraryNotLoadedError, PUBLISHER_ACL_COMMANDS, RedisPublisher } from '../src/broker/publisher.js';

// The replyx function library against a real Redis 7: loading (only when missing or older),
// idempotent publishing, and the ACL a publisher-only Redis user needs. Own Redis: it flushes.

let dir: string;
let redisProc: ServiceProcess | undefined;
let url: string;
let admin: Redis;
const clients: Redis[] = [];

const connect = (options: { username?: string; password?: string } = {}): Redis => {
  // A publisher-only user may not run INFO, so the ready check is off.
  const r = new Redis(url, { ...options, maxRetriesPerRequest: 1, enableReadyCheck: false });
  clients.push(r);
  return r;
};

const loadedVersion = async (): Promise<string | undefined> => {
  const list = (await admin.call('FUNCTION', 'LIST', 'LIBRARYNAME', LIBRARY_NAME, 'WITHCODE')) as unknown[][];
  if (list.length === 0) return undefined;
  const entry = list[0]!;
  const code = String(entry[entry.indexOf('library_code') + 1]);
  return /local VERSION = '(\d+)'/.exec(code)?.[1];
};

const withVersion = (v: number) => LIBRARY_SOURCE.replace(/^local VERSION = '\d+'/m, `local VERSION = '${v}'`);

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'replyx-fn-'));
  await chmod(dir, 0o755);
  const port = await freePort();
  redisProc = await startRedis({ dir, port });
  url = `redis://127.0.0.1:${port}`;
  admin = connect();
});

beforeEach(async () => {
  await admin.function('FLUSH');
  await admin.flushall();
});

afterAll(async () => {
  for (const c of clients) c.disconnect();
  await redisProc?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('loading the library', () => {
  it('the first publish loads a missing library; the version is the one in replyx.lua', async () => {
    expect(await loadedVersion()).toBeUndefined();
    const id = await new RedisPublisher(connect()).publish({ dialogId: 1, type: 'message:new', data: { a: 1 } });
    expect(id).toMatch(/^\d+-\d+$/);
    expect(await loadedVersion()).toBe(String(LIBRARY_VERSION));
  });

  it('replaces an older version, keeps a newer one', async () => {
    await admin.function('LOAD', withVersion(LIBRARY_VERSION - 1));
    await new RedisPublisher(connect()).load();
    expect(await loadedVersion()).toBe(String(LIBRARY_VERSION));
    await admin.function('LOAD', 'REPLACE', withVersion(LIBRARY_VERSION + 5));
    await new RedisPublisher(connect()).load();
    expect(await loadedVersion()).toBe(String(LIBRARY_VERSION + 5));
  });

  it('loads again when Redis lost the library between two publishes (restart without persistence)', async () => {
    const publisher = new RedisPublisher(connect());
    await publisher.publish({ dialogId: 2, type: 't', data: 1 });
    await admin.function('FLUSH');
    await publisher.publish({ dialogId: 2, type: 't', data: 2 });
    expect(await admin.xlen(dialogStream(2))).toBe(2);
  });
});

describe('replyx_publish idempotency', () => {
  it('a repeated key returns the first id and publishes nothing; other keys and no key publish', async () => {
    const publisher = new RedisPublisher(connect(), { idempotencyTtlS: 120 });
    const sub = connect();
    const heard: string[] = [];
    await sub.subscribe('replyx:dialog:7');
    sub.on('message', (_c: string, m: string) => heard.push(m.slice(0, m.indexOf('|'))));
    const first = await publisher.publishEvent({ dialogId: 7, type: 'message:new', data: { n: 1 }, idempotencyKey: 'message:41' });
    const again = await publisher.publishEvent({ dialogId: 7, type: 'message:new', data: { n: 'changed' }, idempotencyKey: 'message:41' });
    expect(first.duplicate).toBe(false);
    expect(again).toEqual({ id: first.id, duplicate: true });
    const other = await publisher.publishEvent({ dialogId: 7, type: 'message:new', data: {}, idempotencyKey: 'message:42' });
    const plain = await publisher.publishEvent({ dialogId: 7, type: 'message:new', data: {} });
    expect(new Set([first.id, other.id, plain.id]).size).toBe(3);
    // The same key on another dialog is another key.
    const elsewhere = await publisher.publishEvent({ dialogId: 8, type: 'message:new', data: {}, idempotencyKey: 'message:41' });
    expect(elsewhere.duplicate).toBe(false);
    expect(await admin.xlen(dialogStream(7))).toBe(3);
    await expect.poll(() => heard.length).toBe(3);
    expect(heard).toEqual([first.id, other.id, plain.id]);
    const ttl = await admin.ttl(dialogIdempotencyKey(7, 'message:41'));
    expect(ttl).toBeGreaterThan(100);
    expect(ttl).toBeLessThanOrEqual(120);
  });

  it('after the window the same key publishes again', async () => {
    const publisher = new RedisPublisher(connect(), { idempotencyTtlS: 1 });
    const a = await publisher.publish({ dialogId: 9, type: 't', data: 1, idempotencyKey: 'k' });
    await new Promise((r) => setTimeout(r, 1100));
    const b = await publisher.publish({ dialogId: 9, type: 't', data: 1, idempotencyKey: 'k' });
    expect(b).not.toBe(a);
  });

  it('concurrent publishes with one key yield one event', async () => {
    const publisher = new RedisPublisher(connect());
    const ids = await Promise.all(Array.from({ length: 20 }, () => publisher.publish({ dialogId: 10, type: 't', data: 1, idempotencyKey: 'burst' })));
    expect(new Set(ids).size).toBe(1);
    expect(await admin.xlen(dialogStream(10))).toBe(1);
  });

  it('refuses a malformed key before touching Redis', async () => {
    const publisher = new RedisPublisher(connect());
    for (const key of ['', 'has space', 'x'.repeat(201), 'a\u0000b']) {
      await expect(publisher.publish({ dialogId: 1, type: 't', data: 1, idempotencyKey: key })).rejects.toThrow(/idempotencyKey must be 1-200 characters/);
    }
  });
});

describe('a publisher-only Redis user', () => {
  const acl = (user: string, commands: readonly string[]) => admin.call('ACL', 'SETUSER', user, 'reset', 'on', '>pw-for-tests', '~replyx:*', '&replyx:*', '-@all', ...commands.map((c) => `+${c}`));

  it(`publishes with exactly ${PUBLISHER_ACL_COMMANDS.join(' ')} once the library is loaded, and says who must load it otherwise`, async () => {
    await acl('pub', PUBLISHER_ACL_COMMANDS);
    const limited = new RedisPublisher(connect({ username: 'pub', password: 'pw-for-tests' }));
    await expect(limited.publish({ dialogId: 3, type: 't', data: 1 })).rejects.toThrow(LibraryNotLoadedError);
    await new RedisPublisher(connect()).load();
    const id = await limited.publish({ dialogId: 3, type: 't', data: 1, idempotencyKey: 'm1' });
    expect(await limited.publish({ dialogId: 3, type: 't', data: 1, idempotencyKey: 'm1' })).toBe(id);
    // Without one of the function's commands the function cannot run: Redis checks them all.
    await acl('pub-fcall-only', ['fcall']);
    const fcallOnly = new RedisPublisher(connect({ username: 'pub-fcall-only', password: 'pw-for-tests' }));
    await expect(fcallOnly.publish({ dialogId: 3, type: 't', data: 1 })).rejects.toThrow(/can't run this command/);
  });
});
