import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../infra/targets/local/ports.js';
import { startRedis, type ServiceProcess } from '../../infra/targets/local/processes.js';
import type { BrokerEvent } from '../src/broker/protocol.js';
import { RedisBroker } from '../src/broker/redis-broker.js';
import { eventually } from './harness.js';

// The Redis broker subscribes the dialogs joined in one event-loop turn with one SUBSCRIBE (and
// unsubscribes those left with one UNSUBSCRIBE); joins and leaves of one dialog within a turn
// end in the state of the last of them; joins that come while a SUBSCRIBE is out wait for its
// reply and go in the next one. Counted with INFO commandstats on a Redis of its own.

let dir: string;
let redisProc: ServiceProcess | undefined;
let url: string;
let admin: Redis;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'replyx-gw-subbatch-'));
  await chmod(dir, 0o755);
  const port = await freePort();
  redisProc = await startRedis({ dir, port });
  url = `redis://127.0.0.1:${port}`;
  admin = new Redis(url);
});

afterAll(async () => {
  admin?.disconnect();
  await redisProc?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** Calls of one command so far (INFO commandstats). */
async function calls(command: 'subscribe' | 'unsubscribe'): Promise<number> {
  const info = await admin.info('commandstats');
  return Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(info)?.[1] ?? 0);
}

/** Subscribers Redis counts on each dialog's channel. */
async function subscribers(dialogs: readonly number[]): Promise<number[]> {
  const reply = (await admin.call('PUBSUB', 'NUMSUB', ...dialogs.map((d) => `replyx:dialog:${d}`))) as (string | number)[];
  return dialogs.map((_, i) => Number(reply[i * 2 + 1]));
}

async function startBroker(events: BrokerEvent[]): Promise<RedisBroker> {
  const broker = new RedisBroker(
    { url, historyLength: 100, historyTtlS: 3600, commandTimeoutMs: 2000, startTimeoutMs: 5000, logger: pino({ level: 'silent' }) },
    { onEvent: (e) => events.push(e), onResync: () => undefined },
  );
  await broker.start();
  return broker;
}

describe('RedisBroker subscription batching', () => {
  it('subscribes 300 dialogs joined in one turn with one SUBSCRIBE, delivers on each, and unsubscribes them with one UNSUBSCRIBE', async () => {
    const events: BrokerEvent[] = [];
    const broker = await startBroker(events);
    const dialogs = Array.from({ length: 300 }, (_, i) => 10_000 + i);
    const before = await calls('subscribe');
    await Promise.all(dialogs.map((d) => broker.subscribe(d)));
    expect((await calls('subscribe')) - before).toBe(1);
    expect(await subscribers(dialogs)).toEqual(dialogs.map(() => 1));
    const ids = await Promise.all([dialogs[0]!, dialogs[299]!].map((d) => broker.publish({ dialogId: d, type: 'message:new', data: { d } })));
    await eventually(() => events.length === 2);
    expect(events.map((e) => e.id).sort()).toEqual([...ids].sort());
    const unsubscribedBefore = await calls('unsubscribe');
    for (const d of dialogs) broker.unsubscribe(d);
    await eventually(async () => (await subscribers(dialogs)).every((n) => n === 0));
    expect((await calls('unsubscribe')) - unsubscribedBefore).toBe(1);
    expect(broker.subscribedCount).toBe(0);
    await broker.close();
  });

  it('joins that come one per turn while a SUBSCRIBE is out go in one next SUBSCRIBE, sent once its reply is in', async () => {
    const events: BrokerEvent[] = [];
    const broker = await startBroker(events);
    const [first, ...later] = Array.from({ length: 10 }, (_, i) => 30_000 + i);
    const before = await calls('subscribe');
    // Redis holds every client's commands for 300 ms: the first SUBSCRIBE stays out meanwhile.
    await admin.call('CLIENT', 'PAUSE', '300', 'ALL');
    const joined = [broker.subscribe(first!)];
    for (const d of later) {
      await new Promise((resolve) => setImmediate(resolve));
      joined.push(broker.subscribe(d));
    }
    await Promise.all(joined);
    expect((await calls('subscribe')) - before).toBe(2);
    expect(await subscribers([first!, ...later])).toEqual([first, ...later].map(() => 1));
    const id = await broker.publish({ dialogId: later.at(-1)!, type: 'message:new', data: {} });
    await eventually(() => events.some((e) => e.id === id));
    await broker.close();
  });

  it('a dialog joined and left in one turn ends unsubscribed; one left and joined again ends subscribed and delivering', async () => {
    const events: BrokerEvent[] = [];
    const broker = await startBroker(events);
    const [gone, back] = [20_001, 20_002];
    await broker.subscribe(back);
    const joined = broker.subscribe(gone);
    broker.unsubscribe(gone);
    broker.unsubscribe(back);
    const rejoined = broker.subscribe(back);
    await Promise.all([joined, rejoined]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(await subscribers([gone, back])).toEqual([0, 1]);
    expect(broker.subscribedCount).toBe(1);
    const id = await broker.publish({ dialogId: back, type: 'message:new', data: {} });
    await eventually(() => events.some((e) => e.id === id));
    await broker.close();
  });
});
