import { Redis } from 'ioredis';
import WebSocket from 'ws';
import { Server } from 'socket.io';
import { createAdapter } from '@socket.io/redis-adapter';
import { RedisPublisher } from '../../gateway/src/broker/publisher.js';
import { eventData, eventFrame, fillerText, sharedClockMs, type BenchEventData } from '../event.js';
import type { PublishPlan, PublishTarget, PublisherCommand, PublisherReply } from './messages.js';
import { serveCommands } from './pool.js';

// Publisher process (forked by the harness): sends the scenario's events to one system the way
// that system's users publish (our Redis function (FCALL replyx_publish), Pushpin's HTTP API, a Socket.IO Redis
// adapter, a plain WebSocket for the floor), stamping each with the shared wall clock.

/** Distinct error strings kept per run. */
const MAX_ERROR_SAMPLES = 5;

interface PlannedEvent {
  readonly dialog: number;
  readonly data: BenchEventData;
}

/** Delivers one batch; resolves with per-event success. */
interface Sender {
  send(batch: readonly PlannedEvent[]): Promise<boolean[]>;
  close(): Promise<void>;
}

async function redisLuaSender(redisUrl: string): Promise<Sender> {
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  const publisher = new RedisPublisher(redis, { historyLength: 100, historyTtlS: 600 });
  return {
    async send(batch) {
      const results = await Promise.allSettled(batch.map((e) => publisher.publish({ dialogId: e.dialog, type: 'message:new', data: e.data })));
      return results.map((r) => {
        if (r.status === 'rejected') lastError = String(r.reason);
        return r.status === 'fulfilled';
      });
    },
    async close() {
      redis.disconnect();
    },
  };
}

async function wsFloorSender(url: string): Promise<Sender> {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return {
    async send(batch) {
      // The callback of the last send fires once all of the batch reached the socket.
      await Promise.all(batch.map((e) => new Promise<void>((resolve, reject) => ws.send(`${e.dialog}|${eventFrame(e.dialog, e.data)}`, (err) => (err ? reject(err) : resolve())))));
      return batch.map(() => true);
    },
    async close() {
      ws.close();
    },
  };
}

function pushpinSender(url: string): Sender {
  return {
    async send(batch) {
      // One request per batch: the publish API takes many items, which is how a backend would use it.
      const items = batch.map((e) => ({ channel: `d${e.dialog}`, formats: { 'ws-message': { content: eventFrame(e.dialog, e.data) } } }));
      const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ items }) });
      await res.arrayBuffer();
      if (!res.ok) {
        lastError = `pushpin publish: HTTP ${res.status}`;
        return batch.map(() => false);
      }
      return batch.map(() => true);
    },
    async close() {},
  };
}

async function socketIoSender(redisUrl: string): Promise<Sender> {
  const pub = new Redis(redisUrl);
  const sub = pub.duplicate();
  // A server that never listens: it exists to broadcast through the adapter, as an app's API
  // process would next to its Socket.IO nodes.
  const server = new Server({ adapter: createAdapter(pub, sub) });
  await Promise.all([pub.ping(), sub.ping()]);
  return {
    async send(batch) {
      for (const e of batch) server.to(`d:${e.dialog}`).emit('event', eventFrame(e.dialog, e.data));
      return batch.map(() => true);
    },
    async close() {
      // Not server.close(): a server that never listened has no engine to close.
      server.removeAllListeners();
      pub.disconnect();
      sub.disconnect();
    },
  };
}

let lastError: string | undefined;

async function sender(target: PublishTarget): Promise<Sender> {
  switch (target.kind) {
    case 'redis-lua':
      return redisLuaSender(target.redisUrl);
    case 'ws-floor':
      return wsFloorSender(target.url);
    case 'pushpin-http':
      return pushpinSender(target.url);
    case 'socketio-redis':
      return socketIoSender(target.redisUrl);
  }
}

async function run(target: PublishTarget, plan: PublishPlan): Promise<PublisherReply> {
  const out = await sender(target);
  const text = fillerText(plan.textBytes);
  const perDialog: Record<number, number> = {};
  const errors = new Set<string>();
  let published = 0;
  let failed = 0;
  let seq = 0;
  const inFlight = new Set<Promise<void>>();
  const started = sharedClockMs();
  let firstPublishMs = 0;
  let lastPublishMs = 0;
  while (seq < plan.events && sharedClockMs() - started < plan.maxDurationMs) {
    const elapsedS = (sharedClockMs() - started) / 1000;
    const due = plan.ratePerS > 0 ? Math.min(plan.events, Math.floor(plan.ratePerS * elapsedS) + 1) : plan.events;
    if (seq >= due) {
      await new Promise((r) => setTimeout(r, 1));
      continue;
    }
    if (inFlight.size >= plan.maxInFlight) {
      await Promise.race(inFlight);
      continue;
    }
    const n = Math.min(plan.batchMax, due - seq);
    const batch: PlannedEvent[] = [];
    for (let i = 0; i < n; i++, seq++) batch.push({ dialog: plan.firstDialog + (seq % plan.dialogs), data: eventData(seq, text) });
    if (firstPublishMs === 0) firstPublishMs = batch[0]!.data.t;
    lastPublishMs = batch[batch.length - 1]!.data.t;
    const p: Promise<void> = out
      .send(batch)
      .then(
        (results) => results.forEach((ok, i) => {
          if (ok) {
            published++;
            const d = batch[i]!.dialog;
            perDialog[d] = (perDialog[d] ?? 0) + 1;
          } else failed++;
        }),
        (err: unknown) => {
          failed += batch.length;
          lastError = String(err);
        },
      )
      .then(() => {
        if (lastError !== undefined && errors.size < MAX_ERROR_SAMPLES) errors.add(lastError);
        lastError = undefined;
        inFlight.delete(p);
      });
    inFlight.add(p);
  }
  await Promise.all(inFlight);
  await out.close();
  return { op: 'done', published, failed, perDialog, firstPublishMs, lastPublishMs, errors: [...errors] };
}

serveCommands<PublisherCommand, PublisherReply>((command) => run(command.target, command.plan));
process.send?.({ op: 'ready' } satisfies PublisherReply);
