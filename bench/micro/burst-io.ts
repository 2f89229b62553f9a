#!/usr/bin/env tsx
// Micro-benchmark of a connect burst's two round trips besides the handshake itself, each with
// and without batching, on real Redis and Postgres started in a temp dir:
//   access  DialogAccessStore.lookup of N distinct dialogs at once (cache off), with
//           ACCESS_LOOKUP_BATCH_MAX 1 (one query per dialog, as before) against the default;
//   redis   RedisBroker.subscribe of N dialogs, one per event-loop turn (one SUBSCRIBE write each,
//           as before) against all in one turn (one SUBSCRIBE), then the same for unsubscribe.
// Rounds alternate so both meet the same machine load; prints this process's CPU µs per dialog
// (median) and the ratio. Relative figures only: run it back-to-back.
// Usage: npx tsx bench/micro/burst-io.ts [dialogs=2000] [rounds=5]
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import pino from 'pino';
import { DialogAccessStore } from '../../gateway/src/access/dialog-access.js';
import { RedisBroker } from '../../gateway/src/broker/redis-broker.js';
import { DEFAULTS } from '../../gateway/src/config.js';
import { startBacking } from '../systems/backing.js';

/** Median of a list of numbers. */
function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** This process's CPU µs (user + system) spent in `run`. */
async function cpuUs(run: () => Promise<void>): Promise<number> {
  const before = process.cpuUsage();
  await run();
  const used = process.cpuUsage(before);
  return used.user + used.system;
}

/** Alternating rounds of `a` and `b`; medians of CPU µs per item. */
async function compare(rounds: number, items: number, a: () => Promise<void>, b: () => Promise<void>): Promise<[number, number]> {
  const ta: number[] = [];
  const tb: number[] = [];
  await a();
  await b();
  for (let r = 0; r < rounds; r++) {
    if (r % 2 === 0) {
      ta.push((await cpuUs(a)) / items);
      tb.push((await cpuUs(b)) / items);
    } else {
      tb.push((await cpuUs(b)) / items);
      ta.push((await cpuUs(a)) / items);
    }
  }
  return [median(ta), median(tb)];
}

const count = Number(process.argv[2] ?? 2000);
const rounds = Number(process.argv[3] ?? 5);
const dir = await mkdtemp(path.join(os.tmpdir(), 'replyx-micro-'));
await chmod(dir, 0o755);
const backing = await startBacking({ dir, postgres: true, dialogs: count });
try {
  const ids = Array.from({ length: count }, (_, i) => i + 1);
  const store = (lookupBatchMax: number) => new DialogAccessStore(backing.databaseUrl!, { cacheTtlMs: 0, cacheMax: 0, lookupBatchMax, poolSize: DEFAULTS.DATABASE_POOL_SIZE, queryTimeoutMs: 10_000 });
  const [single, batched] = [store(1), store(DEFAULTS.ACCESS_LOOKUP_BATCH_MAX)];
  const lookups = (s: DialogAccessStore) => async () => {
    const rows = await Promise.all(ids.map((id) => s.lookup(id)));
    if (rows.some((r) => r === null)) throw new Error('a seeded dialog was not found');
  };
  const [accessOne, accessBatch] = await compare(rounds, count, lookups(single), lookups(batched));
  await Promise.all([single.close(), batched.close()]);

  const broker = new RedisBroker(
    { url: backing.redisUrl, historyLength: 100, historyTtlS: 600, commandTimeoutMs: 5000, startTimeoutMs: 5000, logger: pino({ level: 'silent' }) },
    { onEvent: () => undefined, onResync: () => undefined },
  );
  await broker.start();
  const perTurn = async () => {
    const ready: Promise<void>[] = [];
    for (const id of ids) {
      ready.push(broker.subscribe(id));
      await nextTurn();
    }
    await Promise.all(ready);
    for (const id of ids) {
      broker.unsubscribe(id);
      await nextTurn();
    }
    await nextTurn();
  };
  const oneTurn = async () => {
    await Promise.all(ids.map((id) => broker.subscribe(id)));
    for (const id of ids) broker.unsubscribe(id);
    await nextTurn();
  };
  const [redisOne, redisBatch] = await compare(rounds, count, perTurn, oneTurn);
  await broker.close();

  console.log(`connect-burst I/O, ${count} distinct dialogs, this process's CPU per dialog, median of ${rounds} rounds:`);
  console.log(`  access lookup, one query per dialog       ${accessOne.toFixed(1)} µs`);
  console.log(`  access lookup, batched (${DEFAULTS.ACCESS_LOOKUP_BATCH_MAX} per query)    ${accessBatch.toFixed(1)} µs   ratio ${(accessOne / accessBatch).toFixed(2)}x`);
  console.log(`  subscribe+unsubscribe, one write each     ${redisOne.toFixed(1)} µs`);
  console.log(`  subscribe+unsubscribe, one per turn-batch ${redisBatch.toFixed(1)} µs   ratio ${(redisOne / redisBatch).toFixed(2)}x`);
} finally {
  await backing.stop();
  await rm(dir, { recursive: true, force: true });
}
