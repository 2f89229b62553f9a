import * as hdr from 'hdr-histogram-js';
import { chmod, mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DEFAULTS as GATEWAY_DEFAULTS } from '../gateway/src/config.js';
import { parseOpenFileLimits } from '../gateway/src/limits/open-files.js';
import { holdSourceAddress, pingsExpected, planHold, summarizeHeartbeats } from './hold.js';
import { cpuSecondsBetween, cpuSecondsByPid, measure, processLimits, rssByName } from './proc.js';
import { LoadProcess } from './load/pool.js';
import type { ConnectResult, ConnectTarget, GeneratorCommand, GeneratorReply, GeneratorStats, HeartbeatCounts, PublishPlan, PublisherCommand, PublisherReply } from './load/messages.js';
import { startBacking, type Backing } from './systems/backing.js';
import { ensurePushpin, pushpinAvailable, startSystem, type StartContext } from './systems/start.js';
import { SYSTEM_LABELS, type Role, type RunningSystem, type SystemName } from './systems/system.js';
import { runStorm, STORM_FULL, STORM_SMOKE, type StormResult, type StormSizes } from './storm.js';

// The benchmark run: for each system in turn, start it in its own process, drive the four
// scenarios from separate load processes, read the server's RSS and CPU from /proc, stop it.
// Every wait is bounded by an explicit option; nothing is left running when it returns.

/**
 * The scenarios of a run: in its own slot each system meets (c) idle, (b) many, (a) fanout and
 * (f) hold (our single gateway process only: HOLD_SYSTEMS); then (d) connects runs with every
 * system up, bursts in turn (connectsPass); then (e) storm, ours only, on a whole local stack
 * (bench/storm.ts).
 */
export const SCENARIO_NAMES = ['idle', 'many', 'fanout', 'connects', 'hold', 'storm'] as const;

/** The scenarios a system meets in its own slot, one system at a time; (d) and (e) have passes of their own. */
const PER_SYSTEM_SCENARIOS: readonly ScenarioName[] = ['idle', 'many', 'fanout', 'hold'];

/** The systems (f) runs on: it measures one gateway process, so only the gateway reached directly. */
export const HOLD_SYSTEMS: readonly SystemName[] = ['ours'];

/** One scenario of a run. */
export type ScenarioName = (typeof SCENARIO_NAMES)[number];

/** Sizes and limits of one run. Defaults are the full run of issue 7. */
export interface BenchOptions {
  readonly systems: readonly SystemName[];
  /**
   * The scenarios to run (default all, SCENARIO_NAMES): a subset measures one cost without the
   * others' minutes, e.g. `connects` under a CPU profile. `many` opens (c)'s connections itself.
   */
  readonly scenarios?: readonly ScenarioName[];
  /** (a) fan-out: subscribers on one dialog and events published to it as fast as allowed. */
  readonly fanoutSubscribers: number;
  readonly fanoutEvents: number;
  /** (b)+(c): dialogs, each with an admin and a widget connection (connections = 2 x dialogs). */
  readonly dialogs: number;
  /** (b) publish rate and duration of each run. */
  readonly manyRatePerS: number;
  readonly manyDurationS: number;
  /**
   * (b) runs per system over the same connections; the report takes the run with the median
   * p99 (one 20 s p99 on a shared box moved by 2x between runs) and lists every run's.
   */
  readonly manyRuns: number;
  /** (d) connections opened with auth, one per dialog, and how many handshakes in flight per generator. */
  readonly connectCount: number;
  readonly connectConcurrency: number;
  /**
   * (d) measured bursts of `connectCount` per system, each on dialogs no earlier burst used; the
   * report takes the median of each figure (one ~1 s burst on a shared box moved by 2x between
   * runs) and lists every burst's rate.
   */
  readonly connectRuns: number;
  /**
   * (d) connects opened and closed first, unmeasured, on other dialogs than the measured ones:
   * a long-running server meets a reconnect storm with its handshake path compiled, and the
   * first handshakes otherwise bill the JIT to every system differently. 500 were not enough: in
   * the first measured burst after them every system still used up to 2x the CPU per connect
   * of its later bursts, so the full run warms with one burst's worth.
   */
  readonly connectWarmup: number;
  /** Load generator processes (each holds its share of the connections). */
  readonly generators: number;
  /**
   * (f) idle connections to hold on one gateway process. Capped (and the report says so) when
   * the process's open-file limit cannot hold them: see planHold.
   */
  readonly holdConnections: number;
  /** (f) how long they are held, so the gateway's heartbeat pings each several times. */
  readonly holdSeconds: number;
  /** (f) generator processes the held clients are spread over (each holds its share). */
  readonly holdGenerators: number;
  /** (f) loopback source addresses the held clients connect from (127.77.0.1 upward). */
  readonly holdSourceAddresses: number;
  /** Our gateway's HEARTBEAT_MS; unset: the gateway's default (DEFAULTS.HEARTBEAT_MS). */
  readonly gatewayHeartbeatMs?: number;
  /** Handshakes in flight per generator when opening the scenario connections. */
  readonly openConcurrency: number;
  /** Filler bytes in each event (a chat message). */
  readonly textBytes: number;
  /**
   * Seconds of unmeasured publishing at the scenario's rate before (b), and events before (a):
   * the first system in a run would otherwise also pay the JIT warm-up of the publisher and
   * generators, and every server its own.
   */
  readonly warmupS: number;
  /** Give up on a connection not ready after this long. */
  readonly connectTimeoutMs: number;
  /** After the publisher finished, wait at most this long for every expected event. */
  readonly drainTimeoutMs: number;
  /** ...and give up earlier when no new event arrived for this long (the rest is lost). */
  readonly stallTimeoutMs: number;
  /** Pause before the (c) reading just after connecting, so the connects' last allocations land. */
  readonly settleMs: number;
  /**
   * (c)'s figure is read after the connections have been idle this long, and its baseline after
   * the fresh system has been idle this long, the same window (f) holds its connections for. V8's
   * memory reducer gives back the heap a burst grew some time in it (45-100 s after the burst in
   * traced runs), so a process may still hold that heap at the reading; the report says so.
   * 0: only the reading after `settleMs` (smoke).
   */
  readonly idleSettleMs: number;
  /**
   * Before each scenario, wait until the server is idle (under 10 % of a core over half a
   * second), at most this long: leftover work from the previous scenario (closing 10,000
   * sockets, Pushpin telling its origin about each) must not be billed to the next one.
   */
  readonly quiesceTimeoutMs: number;
  /** Upper bound for any single IPC call to a load process. */
  readonly callTimeoutMs: number;
  /** (e) the reconnect storm's sizes. */
  readonly storm: StormSizes;
  /** Install Pushpin with apt-get when missing (full run, root); otherwise skip it when missing. */
  readonly installPushpin: boolean;
  /** Adopt an existing Redis / empty database instead of starting them (tests). */
  readonly redisUrl?: string;
  readonly databaseUrl?: string;
  /** Extra node flags for our gateway, e.g. `--cpu-prof`. */
  readonly gatewayNodeArgs?: readonly string[];
  /**
   * Directory where our gateway writes a heap snapshot (SIGUSR2, needs
   * `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=<dir>` in gatewayNodeArgs) once the idle
   * connections are open. Unset: no snapshot.
   */
  readonly heapSnapshotDir?: string;
  /** Pushpin's log level; default 1 (warnings). */
  readonly pushpinLogLevel?: number;
  /** Keep the scratch dir (server logs, profiles) instead of deleting it. */
  readonly keepDir: boolean;
  readonly log: (line: string) => void;
}

/** The full run's sizes (issue 7). */
export const FULL_RUN: Omit<BenchOptions, 'log' | 'systems'> = {
  fanoutSubscribers: 1000,
  fanoutEvents: 500,
  dialogs: 5000,
  manyRatePerS: 2000,
  manyDurationS: 30,
  manyRuns: 3,
  connectCount: 2000,
  connectConcurrency: 50,
  connectRuns: 5,
  connectWarmup: 2000,
  generators: 2,
  holdConnections: 50_000,
  holdSeconds: 60,
  holdGenerators: 4,
  holdSourceAddresses: 8,
  // Pushpin (Debian 1.36, zurl to the origin) answered 502 to about one handshake in ten with
  // 100 in flight per generator; 10 lets every system open all connections, at the same pace.
  openConcurrency: 10,
  textBytes: 128,
  warmupS: 2,
  connectTimeoutMs: 15_000,
  drainTimeoutMs: 120_000,
  stallTimeoutMs: 5000,
  settleMs: 3000,
  idleSettleMs: 60_000,
  quiesceTimeoutMs: 30_000,
  callTimeoutMs: 180_000,
  storm: STORM_FULL,
  installPushpin: true,
  keepDir: false,
};

/** Seconds-long sizes for the smoke test inside `npm test`. */
export const SMOKE_RUN: Omit<BenchOptions, 'log' | 'systems'> = {
  ...FULL_RUN,
  fanoutSubscribers: 20,
  fanoutEvents: 20,
  dialogs: 20,
  manyRatePerS: 200,
  manyDurationS: 1,
  connectCount: 20,
  connectRuns: 2,
  holdConnections: 40,
  holdSeconds: 2.5,
  holdGenerators: 2,
  holdSourceAddresses: 2,
  // A heartbeat that pings every held connection twice in the smoke's hold.
  gatewayHeartbeatMs: 1000,
  connectConcurrency: 10,
  connectWarmup: 5,
  generators: 1,
  openConcurrency: 20,
  connectTimeoutMs: 10_000,
  drainTimeoutMs: 10_000,
  stallTimeoutMs: 3000,
  settleMs: 200,
  idleSettleMs: 0,
  warmupS: 0.5,
  quiesceTimeoutMs: 5000,
  callTimeoutMs: 60_000,
  storm: STORM_SMOKE,
  installPushpin: false,
};

/** Latency summary in milliseconds. */
export interface LatencyMs {
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly samples: number;
}

/** (c) idle memory. */
export interface IdleResult {
  readonly connections: number;
  readonly failed: number;
  readonly connectErrors: readonly string[];
  readonly rssBeforeBytes: number;
  readonly rssAfterBytes: number;
  /** (c)'s figure: read after `idleMs` of idle connections (the reading just after connecting when idleSettleMs is 0). */
  readonly bytesPerConnection: number;
  /** bytesPerConnection split by process command name (e.g. "node" for the gateway and "nginx" for its workers). */
  readonly bytesPerConnectionByProcess?: Readonly<Record<string, number>>;
  /** How long the connections had been idle at the reading, ms. */
  readonly idleMs?: number;
  /** The reading `settleMs` after the last connect, before the burst's heap was given back. */
  readonly afterConnecting?: { readonly rssBytes: number; readonly bytesPerConnection: number; readonly bytesPerConnectionByProcess: Readonly<Record<string, number>> };
}

/** Delivery figures shared by (a) and (b). */
export interface DeliveryResult {
  readonly connections: number;
  readonly published: number;
  readonly publishFailed: number;
  readonly expected: number;
  readonly received: number;
  readonly lost: number;
  readonly extra: number;
  readonly dropped: number;
  readonly latency: LatencyMs;
  /** Deliveries per second from the first publish to the last receive. */
  readonly deliveredPerS: number;
  readonly seconds: number;
  /** Server CPU use during the scenario, percent of one core. */
  readonly serverCpuPct: number;
  /**
   * Deliveries per CPU-second the server used: the efficiency figure that holds when other
   * work on the machine takes CPU away (throughput per wall second does not).
   */
  readonly deliveriesPerCpuS: number;
  /** Load generators' and publisher's CPU use during the scenario, percent of one core. */
  readonly loadCpuPct: number;
  readonly errors: readonly string[];
}

/** (f) idle connections held on one gateway process through its heartbeats. */
export interface HoldResult {
  /** Connections asked for, the gateway's open-file limit, what was opened and why less (planHold). */
  readonly requested: number;
  readonly openFileLimit?: number;
  readonly target: number;
  readonly limitedBy?: string;
  readonly held: number;
  readonly failed: number;
  readonly connectErrors: readonly string[];
  readonly sourceAddresses: number;
  readonly generators: number;
  readonly seconds: number;
  readonly heartbeatMs: number;
  /** Pings each connection must have had in the window, the fewest one had, how many had fewer. */
  readonly pingsExpected: number;
  readonly pingsMin: number;
  readonly underPinged: number;
  /** Connections still open at the end of the window, and closed by the server (connect + window). */
  readonly openAtEnd: number;
  readonly dropped: number;
  readonly rssBeforeBytes: number;
  readonly rssAfterBytes: number;
  /** (RSS at the end of the window − RSS before opening) / held. */
  readonly bytesPerConnection: number;
  /** Gateway CPU during the window (the heartbeat's cost), percent of one core. */
  readonly serverCpuPct: number;
}

/** (d) connects per second: one burst, or (in SystemResult.connects) the medians of the bursts. */
export interface ConnectsResult {
  readonly attempted: number;
  readonly ok: number;
  readonly failed: number;
  readonly perS: number;
  /**
   * Server CPU milliseconds per successful connect (every server process, nginx included): the
   * figure that stays comparable when other work on the machine slows the wall clock.
   */
  readonly serverCpuMsPerConnect?: number;
  /** The part of serverCpuMsPerConnect that nginx's master and workers used (systems behind nginx). */
  readonly proxyCpuMsPerConnect?: number;
  /**
   * Redis and Postgres CPU milliseconds per successful connect (0 for systems that never touch
   * them during a connect): on a small machine they compete with the server for the same cores.
   */
  readonly backingCpuMsPerConnect?: number;
  /** Load generator CPU milliseconds per successful connect (the client library's share of the cores). */
  readonly clientCpuMsPerConnect?: number;
  readonly authenticated: boolean;
  readonly errors: readonly string[];
}

/** Everything measured for one system. */
export interface SystemResult {
  readonly system: SystemName;
  readonly label: string;
  readonly versions: Readonly<Record<string, string>>;
  /** Set when the system could not run; the other fields may be missing. */
  readonly error?: string;
  readonly skipped?: string;
  readonly idle?: IdleResult;
  /** (b): the run with the median p99 of `manyRuns` (every run in manyRuns). */
  readonly many?: DeliveryResult;
  readonly manyRuns?: readonly DeliveryResult[];
  readonly fanout?: DeliveryResult;
  /** (d): each figure the median over `connectRuns` bursts, counts summed (every burst in connectsRuns). */
  readonly connects?: ConnectsResult;
  readonly connectsRuns?: readonly ConnectsResult[];
  readonly hold?: HoldResult;
}

/** A complete run. */
export interface BenchRun {
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly options: Omit<BenchOptions, 'log'>;
  readonly backingVersions: Readonly<Record<string, string>>;
  readonly loadAvgBefore: readonly number[];
  readonly loadAvgAfter: readonly number[];
  readonly results: readonly SystemResult[];
  /** (e) the reconnect storm, when selected. */
  readonly storm?: StormResult;
}

type Generator = LoadProcess<GeneratorCommand, GeneratorReply>;
type Publisher = LoadProcess<PublisherCommand, PublisherReply>;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function latency(histogram: hdr.Histogram): LatencyMs {
  const ms = (us: number) => Math.round(us / 10) / 100;
  return { p50: ms(histogram.getValueAtPercentile(50)), p99: ms(histogram.getValueAtPercentile(99)), max: ms(histogram.maxValue), samples: histogram.totalCount };
}

/** Splits targets round-robin over the generators. */
function split<T>(items: readonly T[], parts: number): T[][] {
  const out: T[][] = Array.from({ length: parts }, () => []);
  items.forEach((item, i) => out[i % parts]!.push(item));
  return out;
}

class Driver {
  constructor(
    readonly opts: BenchOptions,
    readonly generators: readonly Generator[],
  ) {}

  #publisher: Publisher | undefined;

  /** The publisher process, started on first use or after a failure. */
  async ensurePublisher(): Promise<Publisher> {
    if (!this.#publisher) {
      const fresh: Publisher = new LoadProcess('publisher', './publisher.ts');
      this.#publisher = fresh;
      await fresh.expect('ready', 30_000);
    }
    return this.#publisher;
  }

  /** Runs `use` with the publisher process, replacing it if it failed. */
  async withPublisher<T>(use: (publisher: Publisher) => Promise<T>): Promise<T> {
    const publisher = await this.ensurePublisher();
    try {
      return await use(publisher);
    } catch (err) {
      // A publisher that failed mid-run may be dead or out of step: the next scenario gets a new one.
      await this.stopPublisher();
      throw err;
    }
  }

  /** Stops the publisher process if one is running. */
  async stopPublisher(): Promise<void> {
    const p = this.#publisher;
    this.#publisher = undefined;
    await p?.stop();
  }

  async connect(system: RunningSystem, targets: readonly ConnectTarget[], concurrency: number): Promise<{ ok: number; failed: number; errors: string[]; elapsedMs: number }> {
    const started = performance.now();
    const parts = split(targets, this.generators.length);
    const replies = (await Promise.all(
      this.generators.map((g, i) =>
        g.call({ op: 'connect', client: system.client, targets: parts[i]!, readyOn: system.readyOn, concurrency, timeoutMs: this.opts.connectTimeoutMs }, this.opts.callTimeoutMs),
      ),
    )) as ConnectResult[];
    return {
      ok: replies.reduce((a, r) => a + r.ok, 0),
      failed: replies.reduce((a, r) => a + r.failed, 0),
      errors: [...new Set(replies.flatMap((r) => r.errors))],
      elapsedMs: performance.now() - started,
    };
  }

  async all(command: GeneratorCommand): Promise<GeneratorReply[]> {
    return Promise.all(this.generators.map((g) => g.call(command, this.opts.callTimeoutMs)));
  }

  async closeAll(): Promise<void> {
    await this.all({ op: 'close' });
  }

  /**
   * Runs `plan` through the publisher, then polls the generators until every expected delivery
   * arrived, the drain timeout passed, or no progress was made for the stall timeout.
   */
  private async publishAndDrain(
    system: RunningSystem,
    plan: PublishPlan,
    connectionsPerDialog: ReadonlyMap<number, number>,
  ): Promise<{ done: Extract<PublisherReply, { op: 'done' }>; expected: number }> {
    const done = (await this.withPublisher((p) => p.call({ op: 'run', target: system.publish, plan }, plan.maxDurationMs + this.opts.callTimeoutMs))) as Extract<PublisherReply, { op: 'done' }>;
    let expected = 0;
    for (const [dialog, n] of Object.entries(done.perDialog)) expected += n * (connectionsPerDialog.get(Number(dialog)) ?? 0);
    const deadline = performance.now() + this.opts.drainTimeoutMs;
    let received = 0;
    let progressAt = performance.now();
    while (performance.now() < deadline && performance.now() - progressAt < this.opts.stallTimeoutMs) {
      const counts = (await this.all({ op: 'count' })) as Extract<GeneratorReply, { op: 'count' }>[];
      const now = counts.reduce((a, c) => a + c.received, 0);
      if (now >= expected) break;
      if (now > received) progressAt = performance.now();
      received = now;
      await sleep(100);
    }
    return { done, expected };
  }

  /** Publishes `plan` unmeasured and waits (stall-bounded) for its deliveries. */
  async warmup(system: RunningSystem, plan: PublishPlan, connectionsPerDialog: ReadonlyMap<number, number>): Promise<void> {
    if (plan.events <= 0) return;
    await this.all({ op: 'reset' });
    await this.publishAndDrain(system, plan, connectionsPerDialog);
    await quiesce(await system.serverPids(), this.opts.quiesceTimeoutMs);
  }

  /** Publishes the plan, waits for delivery, and gathers counts and latencies. */
  async deliver(system: RunningSystem, plan: PublishPlan, connectionsPerDialog: ReadonlyMap<number, number>, connections: number): Promise<DeliveryResult> {
    await this.all({ op: 'reset' });
    const pids = await system.serverPids();
    const loadPids = [...this.generators.map((g) => g.pid), (await this.ensurePublisher()).pid];
    const cpuBefore = await measure(pids);
    const loadBefore = await measure(loadPids);
    const t0 = performance.now();
    const { done, expected } = await this.publishAndDrain(system, plan, connectionsPerDialog);
    const wallS = (performance.now() - t0) / 1000;
    const cpuAfter = await measure(pids);
    const loadAfter = await measure(loadPids);
    const stats = (await this.all({ op: 'stats', expectedPerDialog: done.perDialog })) as GeneratorStats[];
    const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });
    for (const s of stats) {
      const part = hdr.decodeFromCompressedBase64(s.histogram);
      histogram.add(part);
      part.destroy();
    }
    const lastReceiveMs = Math.max(...stats.map((s) => s.lastReceiveMs));
    const received = stats.reduce((a, s) => a + s.received, 0);
    const seconds = lastReceiveMs > 0 && done.firstPublishMs > 0 ? (lastReceiveMs - done.firstPublishMs) / 1000 : 0;
    const result: DeliveryResult = {
      connections,
      published: done.published,
      publishFailed: done.failed,
      expected,
      received,
      lost: stats.reduce((a, s) => a + s.lost, 0),
      extra: stats.reduce((a, s) => a + s.extra, 0),
      dropped: stats.reduce((a, s) => a + s.dropped, 0),
      latency: latency(histogram),
      deliveredPerS: seconds > 0 ? Math.round(received / seconds) : 0,
      seconds: Math.round(seconds * 1000) / 1000,
      serverCpuPct: Math.round(((cpuAfter.cpuSeconds - cpuBefore.cpuSeconds) / wallS) * 100),
      deliveriesPerCpuS: cpuAfter.cpuSeconds > cpuBefore.cpuSeconds ? Math.round(received / (cpuAfter.cpuSeconds - cpuBefore.cpuSeconds)) : 0,
      loadCpuPct: Math.round(((loadAfter.cpuSeconds - loadBefore.cpuSeconds) / wallS) * 100),
      errors: done.errors,
    };
    histogram.destroy();
    return result;
  }
}

/** Longest we wait for a heap snapshot to be written. */
const HEAP_SNAPSHOT_TIMEOUT_MS = 120_000;

/** Asks the gateway for a heap snapshot and waits until the file stops growing. */
async function heapSnapshot(pid: number, dir: string, log: (line: string) => void): Promise<void> {
  const before = new Set(await readdir(dir));
  process.kill(pid, 'SIGUSR2');
  const deadline = Date.now() + HEAP_SNAPSHOT_TIMEOUT_MS;
  let lastSize = -1;
  while (Date.now() < deadline) {
    await sleep(1000);
    const fresh = (await readdir(dir)).filter((f) => f.endsWith('.heapsnapshot') && !before.has(f));
    if (fresh.length === 0) continue;
    const size = (await stat(path.join(dir, fresh[0]!))).size;
    if (size > 0 && size === lastSize) {
      log(`heap snapshot ${path.join(dir, fresh[0]!)} (${(size / 1024 ** 2).toFixed(0)} MiB)`);
      return;
    }
    lastSize = size;
  }
  log('heap snapshot did not finish in time');
}

/** Waits until the processes use under 10 % of a core over 500 ms, or `timeoutMs` passes. */
async function quiesce(pids: readonly number[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = (await measure(pids)).cpuSeconds;
  while (Date.now() < deadline) {
    await sleep(500);
    const now = (await measure(pids)).cpuSeconds;
    if (now - last < 0.05) return;
    last = now;
  }
}

function dialogTargets(system: RunningSystem, dialogs: readonly number[], roles: readonly Role[]): ConnectTarget[] {
  const out: ConnectTarget[] = [];
  for (const d of dialogs) for (const role of roles) out.push(system.target(d, role));
  return out;
}

function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

function range(first: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => first + i);
}

/** (c), (b), (a) and (f) on one system, as selected; (d) runs in its own pass (connectsPass). */
async function runSystem(driver: Driver, system: RunningSystem, opts: BenchOptions, restart: () => Promise<RunningSystem>): Promise<Omit<SystemResult, 'system' | 'label' | 'versions'>> {
  const log = (line: string) => opts.log(`  ${system.name}: ${line}`);
  const selected = new Set<ScenarioName>(opts.scenarios ?? SCENARIO_NAMES);
  const out: { idle?: IdleResult; many?: DeliveryResult; manyRuns?: DeliveryResult[]; fanout?: DeliveryResult; hold?: HoldResult } = {};
  if (selected.has('idle') || selected.has('many')) {
    const { idle, opened } = await idleScenario(driver, system, opts, log);
    if (selected.has('idle')) out.idle = idle;
    if (selected.has('many')) {
      out.manyRuns = await manyScenario(driver, system, opts, log, opened);
      out.many = medianByP99(out.manyRuns);
    }
    await driver.closeAll();
  }
  if (selected.has('fanout')) out.fanout = await fanoutScenario(driver, system, opts, log);
  if (selected.has('hold') && HOLD_SYSTEMS.includes(system.name)) {
    // A process that already held (c)'s connections keeps a heap and malloc arenas sized for them,
    // and new sockets reuse that memory: (f) on it would bill almost nothing per connection
    // (0.3 KiB in a full run). It gets a fresh process, as (c) does.
    const ranBefore = PER_SYSTEM_SCENARIOS.some((s) => s !== 'hold' && selected.has(s));
    if (ranBefore) log('hold: on a fresh gateway process');
    out.hold = await holdScenario(ranBefore ? await restart() : system, opts, log);
  }
  return out;
}

/** The run with the median p99 (the lower middle one for an even count). */
export function medianByP99<T extends { readonly latency: LatencyMs }>(runs: readonly T[]): T | undefined {
  const sorted = [...runs].sort((a, b) => a.latency.p99 - b.latency.p99);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

type ScenarioLog = (line: string) => void;

/** (c) idle memory, on the connections (b) then uses; they stay open for (b). */
async function idleScenario(driver: Driver, system: RunningSystem, opts: BenchOptions, log: ScenarioLog): Promise<{ idle: IdleResult; opened: number }> {
  // The system has just started: its start-up garbage is given back in the same window as a
  // burst's, so the baseline waits as long as the reading does.
  await sleep(Math.max(opts.settleMs, opts.idleSettleMs));
  const pids = await system.serverPids();
  await quiesce(pids, opts.quiesceTimeoutMs);
  const before = await rssByName(pids);
  const dialogs = range(1, opts.dialogs);
  const manyTargets = dialogTargets(system, dialogs, ['admin', 'widget']);
  log(`opening ${manyTargets.length} connections over ${opts.dialogs} dialogs`);
  const opened = await driver.connect(system, manyTargets, opts.openConcurrency);
  const connectedAt = Date.now();
  const reading = async (afterMs: number) => {
    await sleep(Math.max(0, connectedAt + afterMs - Date.now()));
    await quiesce(await system.serverPids(), opts.quiesceTimeoutMs);
    const rss = await rssByName(await system.serverPids());
    return { idleMs: Date.now() - connectedAt, ...idleReading(before, rss, opened.ok) };
  };
  const first = await reading(opts.settleMs);
  const settled = opts.idleSettleMs > 0 ? await reading(opts.idleSettleMs) : first;
  const idle: IdleResult = {
    connections: opened.ok,
    failed: opened.failed,
    connectErrors: opened.errors,
    rssBeforeBytes: sum(Object.values(before)),
    rssAfterBytes: settled.rssBytes,
    bytesPerConnection: settled.bytesPerConnection,
    bytesPerConnectionByProcess: settled.bytesPerConnectionByProcess,
    idleMs: settled.idleMs,
    ...(settled === first ? {} : { afterConnecting: { rssBytes: first.rssBytes, bytesPerConnection: first.bytesPerConnection, bytesPerConnectionByProcess: first.bytesPerConnectionByProcess } }),
  };
  const kibs = (r: { bytesPerConnection: number; bytesPerConnectionByProcess: Readonly<Record<string, number>> }) => {
    const parts = Object.entries(r.bytesPerConnectionByProcess);
    return `${(r.bytesPerConnection / 1024).toFixed(1)} KiB${parts.length > 1 ? ` (${parts.map(([name, b]) => `${name} ${(b / 1024).toFixed(1)}`).join(', ')})` : ''}`;
  };
  log(`idle: ${opened.ok} open (${opened.failed} failed), RSS per connection ${kibs(first)} after ${(first.idleMs / 1000).toFixed(0)} s${settled === first ? '' : `, ${kibs(settled)} after ${(settled.idleMs / 1000).toFixed(0)} s idle`}`);
  if (opts.heapSnapshotDir && system.name === 'ours') await heapSnapshot(pids[0]!, opts.heapSnapshotDir, log);
  return { idle, opened: opened.ok };
}

/** RSS growth per open connection between two readings by process name, in all and per process. */
export function idleReading(before: Readonly<Record<string, number>>, after: Readonly<Record<string, number>>, connections: number): { rssBytes: number; bytesPerConnection: number; bytesPerConnectionByProcess: Record<string, number> } {
  const perConnection = (bytes: number) => (connections > 0 ? Math.round(bytes / connections) : 0);
  const rssBytes = sum(Object.values(after));
  return {
    rssBytes,
    bytesPerConnection: perConnection(rssBytes - sum(Object.values(before))),
    bytesPerConnectionByProcess: Object.fromEntries(Object.entries(after).map(([name, rss]) => [name, perConnection(rss - (before[name] ?? 0))])),
  };
}

/** (b) many dialogs at a steady rate, `manyRuns` times over the connections (c) opened. */
async function manyScenario(driver: Driver, system: RunningSystem, opts: BenchOptions, log: ScenarioLog, opened: number): Promise<DeliveryResult[]> {
  const perDialog = new Map(range(1, opts.dialogs).map((d) => [d, 2]));
  const events = Math.round(opts.manyRatePerS * opts.manyDurationS);
  const manyPlan: PublishPlan = { events, firstDialog: 1, dialogs: opts.dialogs, ratePerS: opts.manyRatePerS, maxInFlight: 64, batchMax: 100, textBytes: opts.textBytes, maxDurationMs: opts.manyDurationS * 1000 * 2 + 5000 };
  await driver.warmup(system, { ...manyPlan, events: Math.round(opts.manyRatePerS * opts.warmupS), maxDurationMs: opts.warmupS * 2000 + 5000 }, perDialog);
  const runs: DeliveryResult[] = [];
  for (let i = 1; i <= opts.manyRuns; i++) {
    log(`many dialogs, run ${i}/${opts.manyRuns}: ${events} events at ${opts.manyRatePerS}/s`);
    // Each run starts from an idle server, as the first one does after the warm-up.
    if (i > 1) await quiesce(await system.serverPids(), opts.quiesceTimeoutMs);
    const many = await driver.deliver(system, manyPlan, perDialog, opened);
    log(`many dialogs, run ${i}: p50 ${many.latency.p50} ms, p99 ${many.latency.p99} ms, lost ${many.lost}`);
    runs.push(many);
  }
  return runs;
}

/** (a) fan-out on one dialog, burst. */
async function fanoutScenario(driver: Driver, system: RunningSystem, opts: BenchOptions, log: ScenarioLog): Promise<DeliveryResult> {
  await quiesce(await system.serverPids(), opts.quiesceTimeoutMs);
  const fanoutDialog = 1;
  const fanoutTargets = range(0, opts.fanoutSubscribers).map((i) => system.target(fanoutDialog, i % 2 === 0 ? 'admin' : 'widget'));
  const subscribed = await driver.connect(system, fanoutTargets, opts.openConcurrency);
  log(`fan-out: ${subscribed.ok} subscribers, ${opts.fanoutEvents} events`);
  const fanoutPlan: PublishPlan = { events: opts.fanoutEvents, firstDialog: fanoutDialog, dialogs: 1, ratePerS: 0, maxInFlight: 4, batchMax: 50, textBytes: opts.textBytes, maxDurationMs: 60_000 };
  const fanoutPerDialog = new Map([[fanoutDialog, subscribed.ok]]);
  // A tenth of the burst, paced, to warm the broadcast path without queueing.
  await driver.warmup(system, { ...fanoutPlan, events: Math.ceil(opts.fanoutEvents / 10), ratePerS: 20 }, fanoutPerDialog);
  const delivered = await driver.deliver(system, fanoutPlan, fanoutPerDialog, subscribed.ok);
  const fanout: DeliveryResult =
    subscribed.failed > 0 ? { ...delivered, errors: [...delivered.errors, `${subscribed.failed} of ${fanoutTargets.length} subscribers could not connect: ${subscribed.errors.join('; ')}`] } : delivered;
  log(`fan-out: ${fanout.deliveredPerS} deliveries/s, p99 ${fanout.latency.p99} ms, lost ${fanout.lost}`);
  await driver.closeAll();
  return fanout;
}

/**
 * The dialogs (d) uses: `connectRuns` measured bursts of `connectCount`, then the warm-up's, all
 * after the `dialogs` that (c), (b) and (f) connect to. No (d) connect presents a widget token or
 * asks for a dialog the gateway has seen in this run, so every burst meets the same cold token
 * and access caches (only the one admin token repeats, as a signed-in operator's does).
 */
export function connectDialogs(opts: Pick<BenchOptions, 'dialogs' | 'connectCount' | 'connectRuns' | 'connectWarmup'>): { runs: number[][]; warmup: number[] } {
  const first = opts.dialogs + 1;
  const runs = range(0, opts.connectRuns).map((r) => range(first + r * opts.connectCount, opts.connectCount));
  return { runs, warmup: range(first + opts.connectRuns * opts.connectCount, opts.connectWarmup) };
}

/** The middle value (the lower middle one for an even count); undefined for none. */
export function median(values: readonly number[]): number | undefined {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

/** (d) over several bursts: each figure's median, counts summed, errors merged. */
export function summarizeConnects(runs: readonly ConnectsResult[]): ConnectsResult | undefined {
  const first = runs[0];
  if (!first) return undefined;
  const med = (pick: (r: ConnectsResult) => number | undefined) => median(runs.flatMap((r) => (pick(r) === undefined ? [] : [pick(r)!])));
  const sum = (pick: (r: ConnectsResult) => number) => runs.reduce((a, r) => a + pick(r), 0);
  const optional = (key: 'serverCpuMsPerConnect' | 'proxyCpuMsPerConnect' | 'backingCpuMsPerConnect' | 'clientCpuMsPerConnect') => {
    const m = med((r) => r[key]);
    return m === undefined ? {} : { [key]: m };
  };
  return {
    attempted: sum((r) => r.attempted),
    ok: sum((r) => r.ok),
    failed: sum((r) => r.failed),
    perS: med((r) => r.perS)!,
    ...optional('serverCpuMsPerConnect'),
    ...optional('proxyCpuMsPerConnect'),
    ...optional('backingCpuMsPerConnect'),
    ...optional('clientCpuMsPerConnect'),
    authenticated: first.authenticated,
    errors: [...new Set(runs.flatMap((r) => r.errors))],
  };
}

/**
 * (d) connects per second, a pass of its own after the others: every system that ran is started
 * again (fresh processes, side by side, idle) and warmed with `connectWarmup` connects, then the
 * bursts go round the systems: burst 1 of each, burst 2 of each, ... Load from outside the run
 * that comes and goes then falls on every system's bursts alike instead of on one system's slot,
 * and the medians compare like with like. Each burst uses dialogs no other burst used
 * (connectDialogs) and starts when every system is idle (the previous burst's closes done).
 */
async function connectsPass(driver: Driver, backing: Backing, opts: BenchOptions, ctx: StartContext, results: SystemResult[]): Promise<void> {
  const running: { index: number; system: RunningSystem }[] = [];
  try {
    for (const [index, r] of results.entries()) {
      if (r.error || r.skipped) continue;
      try {
        running.push({ index, system: await startSystem(r.system, ctx) });
      } catch (err) {
        opts.log(`${r.system}: failed to start for (d): ${(err as Error).message}`);
        results[index] = { ...r, error: (err as Error).message.split('\n')[0] };
      }
    }
    const dialogs = connectDialogs(opts);
    const target = (system: RunningSystem) => (d: number) => system.target(d, d % 2 === 0 ? 'admin' : 'widget');
    const allPids = async () => (await Promise.all(running.map((r) => r.system.serverPids()))).flat();
    if (dialogs.warmup.length > 0) {
      for (const { system } of running) {
        opts.log(`  ${system.name}: connects warm-up, ${dialogs.warmup.length} connects`);
        await driver.connect(system, dialogs.warmup.map(target(system)), opts.connectConcurrency);
        await driver.closeAll();
      }
    }
    const runs = new Map<number, ConnectsResult[]>(running.map((r) => [r.index, []]));
    for (const [i, burstDialogs] of dialogs.runs.entries()) {
      for (const { index, system } of running) {
        // Every system idle: the previous burst's closes are not billed to this one, nor compete with it.
        await quiesce(await allPids(), opts.quiesceTimeoutMs);
        const connects = await connectBurst(driver, system, backing, opts, burstDialogs.map(target(system)));
        opts.log(
          `  ${system.name}: connects, burst ${i + 1}/${dialogs.runs.length}: ${connects.perS}/s, ${connects.serverCpuMsPerConnect ?? '?'} server CPU ms each${connects.proxyCpuMsPerConnect === undefined ? '' : ` (nginx ${connects.proxyCpuMsPerConnect})`}, Redis+Postgres ${connects.backingCpuMsPerConnect ?? '?'}, clients ${connects.clientCpuMsPerConnect ?? '?'} (${connects.failed} failed)`,
        );
        runs.get(index)!.push(connects);
        await driver.closeAll();
      }
    }
    for (const { index, system } of running) {
      const connectsRuns = runs.get(index)!;
      results[index] = { ...results[index]!, versions: { ...results[index]!.versions, ...system.versions }, connectsRuns, connects: summarizeConnects(connectsRuns) };
    }
  } finally {
    await Promise.all(running.map((r) => r.system.stop()));
  }
}

/** One measured burst of (d): opens `targets` and reads every process's CPU around it. */
async function connectBurst(driver: Driver, system: RunningSystem, backing: Backing, opts: BenchOptions, targets: readonly ConnectTarget[]): Promise<ConnectsResult> {
  const clientPids = driver.generators.map((g) => g.pid);
  // Server, proxy, Redis+Postgres, clients; listed again after the burst (Postgres may start a backend meanwhile).
  const groups = async () => [await system.serverPids(), (await system.proxyPids?.()) ?? [], await backing.pids(), clientPids];
  const read = async (pids: number[][]) => Promise.all(pids.map((p) => cpuSecondsByPid(p)));
  const before = await read(await groups());
  const connected = await driver.connect(system, targets, opts.connectConcurrency);
  const after = await read(await groups());
  const msPerConnect = (i: number) => Math.round((cpuSecondsBetween(before[i]!, after[i]!) * 1e6) / connected.ok) / 1000;
  const hasProxy = after[1]!.size > 0;
  return {
    attempted: targets.length,
    ok: connected.ok,
    failed: connected.failed,
    perS: Math.round(connected.ok / (connected.elapsedMs / 1000)),
    ...(connected.ok > 0
      ? {
          serverCpuMsPerConnect: msPerConnect(0),
          ...(hasProxy ? { proxyCpuMsPerConnect: msPerConnect(1) } : {}),
          backingCpuMsPerConnect: msPerConnect(2),
          clientCpuMsPerConnect: msPerConnect(3),
        }
      : {}),
    authenticated: system.authenticates,
    errors: connected.errors,
  };
}

/**
 * (f) idle connections on one gateway process for `holdSeconds` of its heartbeat: as many as
 * asked, or as many as its open-file limit allows (planHold). The clients come from
 * `holdSourceAddresses` loopback addresses and `holdGenerators` processes of their own; each
 * answers the gateway's protocol pings (ws does), and counts them, so the window shows whether
 * the heartbeat ran for every connection and dropped none.
 */
async function holdScenario(system: RunningSystem, opts: BenchOptions, log: ScenarioLog): Promise<HoldResult> {
  const pids = await system.serverPids();
  const gatewayPid = pids[0]!;
  const limits = await processLimits(gatewayPid);
  const plan = planHold(opts.holdConnections, limits === undefined ? {} : parseOpenFileLimits(limits));
  if (plan.limitedBy) log(`hold: ${plan.limitedBy}`);
  const heartbeatMs = opts.gatewayHeartbeatMs ?? GATEWAY_DEFAULTS.HEARTBEAT_MS;
  const generators: Generator[] = Array.from({ length: opts.holdGenerators }, (_, i) => new LoadProcess(`hold-generator-${i}`, './generator.ts'));
  const driver = new Driver(opts, generators);
  try {
    await quiesce(pids, opts.quiesceTimeoutMs);
    const before = await measure(pids);
    // Two connections (admin, widget) per dialog round the seeded dialogs, several per dialog when held > 2 x dialogs.
    const targets: ConnectTarget[] = range(0, plan.target).map((i) => ({
      ...system.target((Math.floor(i / 2) % opts.dialogs) + 1, i % 2 === 0 ? 'admin' : 'widget'),
      localAddress: holdSourceAddress(i, opts.holdSourceAddresses),
    }));
    log(`hold: opening ${fmtCount(plan.target)} connections from ${opts.holdSourceAddresses} source addresses over ${opts.holdGenerators} generators`);
    const opened = await driver.connect(system, targets, opts.openConcurrency);
    log(`hold: ${fmtCount(opened.ok)} open (${opened.failed} failed) in ${(opened.elapsedMs / 1000).toFixed(1)} s; holding ${opts.holdSeconds} s, heartbeat every ${heartbeatMs} ms`);
    // Zero the ping counts: the window starts now.
    await driver.all({ op: 'heartbeats', restart: true });
    const cpuBefore = await measure(pids);
    const t0 = performance.now();
    await sleep(opts.holdSeconds * 1000);
    const wallS = (performance.now() - t0) / 1000;
    const after = await measure(pids);
    const counts = (await driver.all({ op: 'heartbeats', restart: false })) as HeartbeatCounts[];
    const expected = pingsExpected(opts.holdSeconds, heartbeatMs);
    const beats = summarizeHeartbeats(counts, expected);
    const hold: HoldResult = {
      requested: plan.requested,
      ...(plan.openFileLimit !== undefined ? { openFileLimit: plan.openFileLimit } : {}),
      target: plan.target,
      ...(plan.limitedBy ? { limitedBy: plan.limitedBy } : {}),
      held: opened.ok,
      failed: opened.failed,
      connectErrors: opened.errors,
      sourceAddresses: opts.holdSourceAddresses,
      generators: opts.holdGenerators,
      seconds: Math.round(wallS * 10) / 10,
      heartbeatMs,
      pingsExpected: expected,
      pingsMin: beats.pingsMin,
      underPinged: beats.underPinged,
      openAtEnd: beats.open,
      dropped: beats.dropped,
      rssBeforeBytes: before.rssBytes,
      rssAfterBytes: after.rssBytes,
      bytesPerConnection: opened.ok > 0 ? Math.round((after.rssBytes - before.rssBytes) / opened.ok) : 0,
      serverCpuPct: Math.round(((after.cpuSeconds - cpuBefore.cpuSeconds) / wallS) * 100),
    };
    log(`hold: ${fmtCount(hold.openAtEnd)} open after ${hold.seconds} s, ${hold.dropped} dropped, pings per connection >= ${hold.pingsMin} (${expected} expected, ${hold.underPinged} under), ${(hold.bytesPerConnection / 1024).toFixed(1)} KiB each`);
    await driver.closeAll();
    return hold;
  } finally {
    await Promise.all(generators.map((g) => g.stop()));
  }
}

const fmtCount = (n: number) => n.toLocaleString('en-US');

/** Runs the benchmark and returns every figure; starts and stops everything it needs. */
export async function runBench(opts: BenchOptions): Promise<BenchRun> {
  const startedAt = new Date().toISOString();
  const loadAvgBefore = os.loadavg();
  const storm = opts.scenarios?.includes('storm') ?? true;
  // The storm starts its own stack: a run of it alone starts no system and no backing services.
  const { results, backingVersions } = opts.scenarios?.every((s) => s === 'storm') ? { results: [], backingVersions: {} } : await runSystems(opts);
  const stormResult = storm ? await runStorm(opts.storm, opts.log) : undefined;
  const { log: _log, ...options } = opts;
  return { startedAt, finishedAt: new Date().toISOString(), options, backingVersions, loadAvgBefore, loadAvgAfter: os.loadavg(), results, ...(stormResult ? { storm: stormResult } : {}) };
}

/** Every system through the scenarios (a)-(d) selected. */
async function runSystems(opts: BenchOptions): Promise<Pick<BenchRun, 'results' | 'backingVersions'>> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'replyx-bench-'));
  // Postgres runs as the postgres user when we are root and must be able to enter the dir.
  await chmod(dir, 0o755);
  const needsPostgres = opts.systems.some((s) => s === 'ours' || s === 'ours-nginx' || s === 'ours-2');
  const connectDialogsUsed = opts.scenarios?.includes('connects') === false ? 0 : opts.connectCount * opts.connectRuns + opts.connectWarmup;
  const dialogsToSeed = Math.max(opts.dialogs + connectDialogsUsed, 1);
  let backing: Backing | undefined;
  const generators: Generator[] = [];
  const results: SystemResult[] = [];
  let driver: Driver | undefined;
  try {
    opts.log(`backing services (redis${needsPostgres ? ', postgres' : ''}) in ${dir}`);
    backing = await startBacking({ dir, postgres: needsPostgres, dialogs: dialogsToSeed, redisUrl: opts.redisUrl, databaseUrl: opts.databaseUrl });
    for (let i = 0; i < opts.generators; i++) generators.push(new LoadProcess(`generator-${i}`, './generator.ts'));
    driver = new Driver(opts, generators);
    const selected = new Set<ScenarioName>(opts.scenarios ?? SCENARIO_NAMES);
    const ownSlot = PER_SYSTEM_SCENARIOS.some((s) => selected.has(s));
    const context = (subdir: string): StartContext => ({
      dir: subdir,
      backing: backing!,
      gatewayNodeArgs: opts.gatewayNodeArgs,
      gatewayHeartbeatMs: opts.gatewayHeartbeatMs,
      pushpinLogLevel: opts.pushpinLogLevel,
    });
    for (const name of opts.systems) {
      const label = SYSTEM_LABELS[name];
      if (name === 'pushpin' && !(opts.installPushpin ? ensurePushpin(opts.log) : pushpinAvailable())) {
        results.push({ system: name, label, versions: {}, skipped: 'pushpin is not installed (apt-get install -y pushpin)' });
        opts.log(`${name}: skipped, not installed`);
        continue;
      }
      if (!ownSlot) {
        results.push({ system: name, label, versions: {} });
        continue;
      }
      opts.log(`${name}: starting`);
      let system: RunningSystem | undefined;
      try {
        const start = () => startSystem(name, context(dir));
        system = await start();
        const measured = await runSystem(driver, system, opts, async () => {
          await system!.stop();
          system = undefined;
          system = await start();
          return system;
        });
        results.push({ system: name, label, versions: system.versions, ...measured });
      } catch (err) {
        opts.log(`${name}: failed: ${(err as Error).message}`);
        results.push({ system: name, label, versions: system?.versions ?? {}, error: (err as Error).message.split('\n')[0] });
        await driver.closeAll().catch(() => undefined);
      } finally {
        await system?.stop();
      }
    }
    if (selected.has('connects')) {
      // Its own directory: the systems' logs and nginx/Pushpin state from their slots stay apart.
      const connectsDir = path.join(dir, 'connects');
      await mkdir(connectsDir, { recursive: true });
      await chmod(connectsDir, 0o755);
      opts.log('connects: every system side by side, bursts in turn');
      await connectsPass(driver, backing, opts, context(connectsDir), results);
    }
  } finally {
    await driver?.stopPublisher();
    await Promise.all(generators.map((g) => g.stop()));
    await backing?.stop();
    if (!opts.keepDir) await rm(dir, { recursive: true, force: true });
    else opts.log(`kept ${dir}`);
  }
  return { backingVersions: backing?.versions ?? {}, results };
}
