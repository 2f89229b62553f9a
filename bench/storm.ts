import { Redis } from 'ioredis';
import { readFile, stat } from 'node:fs/promises';
import os from 'node:os';
import pg from 'pg';
import { DEMO_DIALOGS, DEMO_USER, signAdminToken } from '../examples/backend/src/demo.js';
import { RedisPublisher } from '../gateway/src/broker/publisher.js';
import { nginxLogFiles } from '../infra/render/nginx.js';
import { runOperatorScript } from '../test/live-clients.js';
import { startOperatorTestStack, type OperatorTestStack } from '../test/operator-stack.js';
import { pacedLoop } from '../test/reliability/paced-loop.js';
import { isRefusedHandshake } from '../test/reliability/suite.js';
import { LoadProcess } from './load/pool.js';
import type { StormClientCommand, StormClientReply } from './load/storm-clients.js';
import { instanceStorms, spread, type InstanceStorm, type PublishedEvent, type ResumedOutage, type Spread } from './storm-score.js';

// (e) The reconnect storm: a local stack as `npm start` runs it (nginx, backend, gateway
// replicas, Redis, Postgres; temp dir, free ports), thousands of contract-following clients
// through nginx from many loopback source addresses, events published at a steady rate, and
// the operator's own `npm run stack -- restart gateway` in the middle: blue/green through a
// stand-in with one replica, rolling with two. Every client must come back with since= and
// have every event published while it was away; nothing lost, nothing twice, no 502.

/** Sizes of the storm. */
export interface StormSizes {
  readonly clients: number;
  /** Clients on each dialog (dialogs = clients / this, seeded for the run): each event reaches this many. */
  readonly clientsPerDialog: number;
  /** Events published per second, round-robin over the dialogs, through the Redis function a backend calls. */
  readonly ratePerS: number;
  /** Client processes (each holds clients / processes sockets, far under its 20,000 descriptors). */
  readonly processes: number;
  /** Loopback source addresses the clients connect from (127.42.x.y), like that many client hosts. */
  readonly sourceAddresses: number;
  /** One run per entry: the stack's gateway.replicas (1: blue/green restart, 2+: rolling). */
  readonly replicas: readonly number[];
  /** gateway.drainWindowMs; unset keeps the stack file's (the default an operator runs). */
  readonly drainWindowMs?: number;
  /** Publishing before the restart starts, and after it returned. */
  readonly leadMs: number;
  readonly tailMs: number;
  /** After publishing stopped, how long every client gets to be open again. */
  readonly settleTimeoutMs: number;
  /** Clients each process starts before waiting for them to be open. */
  readonly openBatch: number;
  readonly openTimeoutMs: number;
}

/** Full run: issue 17's 10,000 clients and 500 events/s, with 1 and 2 replicas. */
export const STORM_FULL: StormSizes = {
  clients: 10_000,
  clientsPerDialog: 10,
  ratePerS: 500,
  processes: 2,
  sourceAddresses: 200,
  replicas: [1, 2],
  leadMs: 3000,
  tailMs: 3000,
  settleTimeoutMs: 60_000,
  openBatch: 100,
  openTimeoutMs: 180_000,
};

/** Seconds-long sizes for `npm test`: the same path, a short drain window. */
export const STORM_SMOKE: StormSizes = {
  ...STORM_FULL,
  clients: 40,
  clientsPerDialog: 4,
  ratePerS: 50,
  processes: 1,
  sourceAddresses: 4,
  drainWindowMs: 1000,
  leadMs: 1000,
  tailMs: 1000,
  settleTimeoutMs: 30_000,
  openBatch: 20,
  openTimeoutMs: 60_000,
};

/**
 * The aim of issue 17 (e): every client resumed within this long of being closed (its time to
 * resume, the figure whose p50/p99 the issue asks for: "all resumed" = the max).
 */
export const STORM_AIM_MS = 10_000;

/** What one restart under the storm measured. */
export interface StormVariant {
  readonly replicas: number;
  readonly restart: 'blue/green' | 'rolling';
  readonly drainWindowMs: number;
  readonly clients: number;
  readonly opened: number;
  readonly published: number;
  readonly publishFailed: number;
  /** How long `npm run stack -- restart gateway` ran. */
  readonly restartMs: number;
  /** From the restart command's start to the last client resumed. */
  readonly lastResumedAfterRestartMs?: number;
  /** Per drained gateway process: clients moved and first close → last of them resumed. */
  readonly storms: readonly InstanceStorm[];
  /** Per outage: close → reconnected with every event published meanwhile received. */
  readonly resumeMs: Spread;
  /** Per outage: close → `connected` again. */
  readonly reconnectMs: Spread;
  /** Per outage that reconnected at its first attempt: that attempt's start → `connected` (the handshake through nginx, queueing included). */
  readonly handshakeMs: Spread;
  /** Attempts beyond the first (a handshake that failed or timed out, then backoff). */
  readonly retries: number;
  readonly outages: number;
  readonly unresumed: number;
  readonly lost: number;
  readonly duplicates: number;
  /** Event frames sent twice to one client (the client hid them). */
  readonly wireRepeats: number;
  /** WebSocket handshakes nginx answered 5xx during the run. */
  readonly refusedHandshakes: number;
  readonly closeCodes: Readonly<Record<string, number>>;
  readonly notOpen: number;
  readonly resyncs: number;
  readonly loadAvg: readonly number[];
  readonly error?: string;
}

/** The storm row of a run. */
export interface StormResult {
  readonly sizes: StormSizes;
  readonly variants: readonly StormVariant[];
}

type StormProcess = LoadProcess<StormClientCommand, StormClientReply>;
type Scored = Extract<StormClientReply, { op: 'scored' }>;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Dialog ids seeded for the storm, far above the demo's. */
const FIRST_DIALOG = 1_000_001;

/** The i-th loopback source address (127.42.0.1, …): distinct client hosts to nginx and the gateway's per-IP limits. */
export function sourceAddress(i: number): string {
  return `127.42.${Math.floor(i / 250)}.${(i % 250) + 1}`;
}

/** Seeds `count` dialogs from FIRST_DIALOG owned by the demo operator's assistant. */
async function seedDialogs(databaseUrl: string, count: number): Promise<void> {
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  try {
    await db.query('INSERT INTO dialogs (id, assistant_id) SELECT g, $1 FROM generate_series($2::bigint, $3::bigint) g ON CONFLICT (id) DO NOTHING', [DEMO_DIALOGS[0]!.assistantId, FIRST_DIALOG, FIRST_DIALOG + count - 1]);
  } finally {
    await db.end();
  }
}

/** Publishes `ratePerS` events round-robin over the dialogs, paced by the clock, recording each. */
function startPublishing(redisUrl: string, opts: { dialogs: number; ratePerS: number; prefix: string; historyLength: number; historyTtlS: number }) {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 3 });
  redis.on('error', () => undefined);
  const publisher = new RedisPublisher(redis, { historyLength: opts.historyLength, historyTtlS: opts.historyTtlS });
  const published: PublishedEvent[] = [];
  let failed = 0;
  const loop = pacedLoop(opts.ratePerS, (seq) => {
    const e: PublishedEvent = { text: `${opts.prefix}:${seq}`, dialogId: FIRST_DIALOG + (seq % opts.dialogs), at: Date.now() };
    return publisher.publish({ dialogId: e.dialogId, type: 'message:new', data: { text: e.text } }).then(
      () => void published.push(e),
      () => void (failed += 1),
    );
  });
  return {
    published,
    failed: () => failed,
    async stop() {
      await loop.stop();
      redis.disconnect();
    },
  };
}

/** Runs one restart under the storm on a fresh stack with `replicas` gateways. */
async function runVariant(replicas: number, sizes: StormSizes, log: (line: string) => void): Promise<StormVariant> {
  const s = { ...sizes, dialogs: Math.max(1, Math.ceil(sizes.clients / sizes.clientsPerDialog)) };
  const loadAvg = os.loadavg();
  const restart = replicas > 1 ? 'rolling' : 'blue/green';
  log(`storm: ${replicas} gateway replica(s): starting a local stack`);
  let stack: OperatorTestStack | undefined;
  const procs: StormProcess[] = [];
  let publishing: ReturnType<typeof startPublishing> | undefined;
  try {
    stack = await startOperatorTestStack((doc) => {
      doc.setIn(['config', 'replyx:monitoring', 'enabled'], false);
      doc.setIn(['config', 'replyx:gateway', 'replicas'], replicas);
      if (s.drainWindowMs !== undefined) doc.setIn(['config', 'replyx:gateway', 'drainWindowMs'], s.drainWindowMs);
      // The backend takes no part in a gateway restart; one worker keeps its CPU out of the figures.
      doc.setIn(['config', 'replyx:backend', 'workers'], 1);
    });
    const h = stack.handle;
    await seedDialogs(h.plan.databaseUrl, s.dialogs);
    const token = await signAdminToken(h.secrets.jwtSecret, DEMO_USER.id, 4 * 3600);
    const prefix = `storm-${Date.now().toString(36)}`;
    const addresses = Array.from({ length: s.sourceAddresses }, (_, i) => sourceAddress(i));
    for (let p = 0; p < s.processes; p += 1) procs.push(new LoadProcess(`storm-clients-${p}`, './storm-clients.ts'));
    log(`storm: opening ${s.clients} clients over ${s.dialogs} dialogs from ${s.sourceAddresses} source addresses through nginx :${h.ports.nginx}`);
    const t0 = Date.now();
    const opened = (await Promise.all(
      procs.map((proc, p) => {
        const mine = Array.from({ length: s.clients }, (_, i) => i).filter((i) => i % s.processes === p);
        return proc.call(
          { op: 'open', url: `http://127.0.0.1:${h.ports.nginx}`, token, dialogs: mine.map((i) => FIRST_DIALOG + (i % s.dialogs)), localAddresses: addresses.filter((_, a) => a % s.processes === p), prefix, batch: s.openBatch, timeoutMs: s.openTimeoutMs },
          s.openTimeoutMs + 30_000,
        );
      }),
    )) as Extract<StormClientReply, { op: 'opened' }>[];
    const open = opened.reduce((n, r) => n + r.open, 0);
    log(`storm: ${open}/${s.clients} open in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    if (open < s.clients) throw new Error(`only ${open} of ${s.clients} clients connected within ${s.openTimeoutMs} ms`);

    const topology = h.plan.topology;
    publishing = startPublishing(h.plan.redisUrl, { dialogs: s.dialogs, ratePerS: s.ratePerS, prefix, historyLength: topology.limits.historyLength, historyTtlS: topology.limits.historyTtlS });
    const accessLog = nginxLogFiles(h.plan.nginxPrefixDir).access;
    const accessFrom = await stat(accessLog).then((st) => st.size, () => 0);
    await sleep(s.leadMs);
    log(`storm: publishing ${s.ratePerS} events/s; npm run stack -- restart gateway (${restart})`);
    const restartAt = Date.now();
    const r = await runOperatorScript('stack.ts', ['restart', 'gateway', ...stack.flags], 300_000);
    const restartMs = Date.now() - restartAt;
    if (r.code !== 0) throw new Error(`npm run stack -- restart gateway exited ${r.code}: ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}`);
    log(`storm: restart took ${(restartMs / 1000).toFixed(1)} s`);
    await sleep(s.tailMs);
    await publishing.stop();
    const counts = async () => ((await Promise.all(procs.map((p) => p.call({ op: 'count' }, 30_000)))) as Extract<StormClientReply, { op: 'count' }>[]).reduce((n, c) => n + c.open, 0);
    const settleUntil = Date.now() + s.settleTimeoutMs;
    while ((await counts()) < s.clients && Date.now() < settleUntil) await sleep(250);
    // The last events' fan-out and any replay still in flight.
    await sleep(2000);
    const published = publishing.published;
    const scored = (await Promise.all(procs.map((p) => p.call({ op: 'score', published }, 120_000)))) as Scored[];
    const outages: ResumedOutage[] = scored.flatMap((x) => x.outages);
    const resumed = outages.filter((o) => o.resumedAt !== undefined);
    const accessLines = (await readFile(accessLog).catch(() => Buffer.alloc(0))).subarray(accessFrom).toString('utf8').split('\n');
    const refused = accessLines.filter(isRefusedHandshake);
    for (const line of refused.slice(0, 3)) log(`storm: nginx refused: ${line.slice(0, 400)}`);
    const errorLines = (await readFile(nginxLogFiles(h.plan.nginxPrefixDir).error, 'utf8').catch(() => '')).split('\n').filter((l) => l.trim() !== '');
    for (const line of errorLines.slice(-5)) log(`storm: nginx error log: ${line.slice(0, 400)}`);
    const lastResumed = resumed.length > 0 ? Math.max(...resumed.map((o) => o.resumedAt!)) : undefined;
    const variant: StormVariant = {
      replicas,
      restart,
      drainWindowMs: topology.gateway.drainWindowMs,
      clients: s.clients,
      opened: open,
      published: published.length,
      publishFailed: publishing.failed(),
      restartMs,
      ...(lastResumed !== undefined ? { lastResumedAfterRestartMs: lastResumed - restartAt } : {}),
      storms: instanceStorms(outages),
      resumeMs: spread(resumed.map((o) => o.resumedAt! - o.closedAt)),
      reconnectMs: spread(outages.filter((o) => o.openedAt !== undefined).map((o) => o.openedAt! - o.closedAt)),
      handshakeMs: spread(outages.filter((o) => o.openedAt !== undefined && o.attempts === 1).map((o) => o.openedAt! - o.closedAt - o.delayMs)),
      retries: outages.reduce((n, o) => n + o.attempts - 1, 0),
      outages: outages.length,
      unresumed: outages.length - resumed.length,
      lost: scored.reduce((n, x) => n + x.lost, 0),
      duplicates: scored.reduce((n, x) => n + x.duplicates, 0),
      wireRepeats: scored.reduce((n, x) => n + x.wireRepeats, 0),
      refusedHandshakes: refused.length,
      closeCodes: outages.reduce<Record<string, number>>((acc, o) => ({ ...acc, [o.code]: (acc[o.code] ?? 0) + 1 }), {}),
      notOpen: scored.reduce((n, x) => n + x.notOpen, 0),
      resyncs: scored.reduce((n, x) => n + x.resyncs, 0),
      loadAvg,
    };
    log(
      `storm: ${replicas} replica(s): ${variant.outages} outages, resume p50 ${variant.resumeMs.p50} ms p99 ${variant.resumeMs.p99} ms max ${variant.resumeMs.max} ms; ` +
        `reconnect p50 ${variant.reconnectMs.p50} p99 ${variant.reconnectMs.p99} ms; handshake p50 ${variant.handshakeMs.p50} p99 ${variant.handshakeMs.p99} ms; retries ${variant.retries}; codes ${JSON.stringify(variant.closeCodes)}; resyncs ${variant.resyncs}; ` +
        `storms ${variant.storms.map((x) => `${x.clients}@${x.spanMs ?? '?'}ms`).join(', ')}; lost ${variant.lost}, duplicates ${variant.duplicates}+${variant.wireRepeats} on the wire, 502s ${variant.refusedHandshakes}`,
    );
    return variant;
  } catch (err) {
    const message = (err as Error).message.split('\n')[0]!;
    log(`storm: ${replicas} replica(s) failed: ${message}`);
    const empty = spread([]);
    return { replicas, restart, drainWindowMs: 0, clients: s.clients, opened: 0, published: 0, publishFailed: 0, restartMs: 0, storms: [], resumeMs: empty, reconnectMs: empty, handshakeMs: empty, retries: 0, outages: 0, unresumed: 0, lost: 0, duplicates: 0, wireRepeats: 0, refusedHandshakes: 0, closeCodes: {}, notOpen: 0, resyncs: 0, loadAvg, error: message };
  } finally {
    await publishing?.stop().catch(() => undefined);
    await Promise.all(procs.map((p) => p.call({ op: 'close' }, 30_000).catch(() => undefined)));
    await Promise.all(procs.map((p) => p.stop()));
    await stack?.stop();
  }
}

/** Runs the storm once per replica count in `sizes.replicas`, each on its own fresh stack. */
export async function runStorm(sizes: StormSizes, log: (line: string) => void): Promise<StormResult> {
  const variants: StormVariant[] = [];
  for (const replicas of sizes.replicas) variants.push(await runVariant(replicas, sizes, log));
  return { sizes, variants };
}

/** True when a variant meets issue 17's aim (e). */
export function stormMet(v: StormVariant): boolean {
  return (
    v.error === undefined &&
    v.opened === v.clients &&
    v.notOpen === 0 &&
    v.unresumed === 0 &&
    v.lost === 0 &&
    v.duplicates === 0 &&
    v.wireRepeats === 0 &&
    v.refusedHandshakes === 0 &&
    v.outages >= v.clients &&
    v.resumeMs.max <= STORM_AIM_MS
  );
}
