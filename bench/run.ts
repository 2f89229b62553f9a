#!/usr/bin/env tsx
// `npm run bench`: runs every scenario against every system on this machine, prints the table,
// and rewrites BENCHMARKS.md, BENCHMARKS.svg and the raw figures in BENCHMARKS.json. `--smoke`
// runs seconds-long sizes instead; `--scenarios connects` (any of idle, many, fanout, connects, hold, storm)
// runs only those; `--render FILE` rewrites the report from saved figures.
import { spawnSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { openFileLimitFor } from '../gateway/src/limits/open-files.js';
import { formatErrorForCli } from '../infra/errors.js';
import { FULL_RUN, SCENARIO_NAMES, SMOKE_RUN, runBench, type BenchOptions, type BenchRun, type ScenarioName } from './harness.js';
import { machineInfo, renderMarkdown, renderSvg, renderTable, type MachineInfo } from './report.js';
import { REPO_ROOT } from './systems/start.js';
import { SYSTEM_NAMES, type SystemName } from './systems/system.js';

const { values } = parseArgs({
  options: {
    smoke: { type: 'boolean', default: false },
    systems: { type: 'string' },
    scenarios: { type: 'string' },
    dialogs: { type: 'string' },
    'fanout-subscribers': { type: 'string' },
    'fanout-events': { type: 'string' },
    rate: { type: 'string' },
    duration: { type: 'string' },
    'many-runs': { type: 'string' },
    'hold-connections': { type: 'string' },
    'hold-seconds': { type: 'string' },
    'hold-generators': { type: 'string' },
    'hold-sources': { type: 'string' },
    'heartbeat-ms': { type: 'string' },
    'gateway-node-args': { type: 'string' },
    'connect-count': { type: 'string' },
    'connect-warmup': { type: 'string' },
    'connect-runs': { type: 'string' },
    'connect-concurrency': { type: 'string' },
    generators: { type: 'string' },
    'open-concurrency': { type: 'string' },
    'storm-clients': { type: 'string' },
    'storm-rate': { type: 'string' },
    'storm-replicas': { type: 'string' },
    'storm-drain-window-ms': { type: 'string' },
    profile: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    'no-write': { type: 'boolean', default: false },
    json: { type: 'string' },
    render: { type: 'string' },
    'pushpin-log-level': { type: 'string' },
    out: { type: 'string', default: path.join(REPO_ROOT, 'BENCHMARKS.md') },
    help: { type: 'boolean', default: false },
  },
});

if (values.help) {
  console.log(`usage: npm run bench -- [--smoke] [--systems ${SYSTEM_NAMES.join(',')}] [--scenarios ${SCENARIO_NAMES.join(',')}] [--dialogs N] [--fanout-subscribers N]
       [--fanout-events N] [--rate N] [--duration S] [--many-runs N] [--hold-connections N] [--hold-seconds S] [--hold-generators N]
       [--hold-sources N] [--heartbeat-ms MS] [--gateway-node-args="--max-semi-space-size=16 ..."] [--connect-count N] [--connect-warmup N] [--connect-runs N] [--connect-concurrency N] [--generators N] [--open-concurrency N]
       [--storm-clients N] [--storm-rate N] [--storm-replicas 1,2] [--storm-drain-window-ms N]
       [--profile] [--keep] [--no-write] [--json run.json] [--out BENCHMARKS.md]
       npm run bench -- --render run.json [--out BENCHMARKS.md]   (rewrite the report from a saved --json run)`);
  process.exit(0);
}

/** A run and its machine as saved by `--json` and in BENCHMARKS.json (what `--render` reads). */
function savedRunText(run: BenchRun, machine: MachineInfo): string {
  return `${JSON.stringify({ machine, ...run }, null, 2)}\n`;
}

/** Writes BENCHMARKS.md, its chart and (for a fresh run) the raw figures beside it. */
async function writeReport(run: BenchRun, machine: MachineInfo, out: string, withData: boolean): Promise<void> {
  const stem = out.replace(/\.md$/, '');
  const written = [out, `${stem}.svg`];
  await writeFile(`${stem}.svg`, renderSvg(run));
  await writeFile(out, renderMarkdown(run, machine, path.basename(`${stem}.svg`)));
  if (withData) {
    await writeFile(`${stem}.json`, savedRunText(run, machine));
    written.push(`${stem}.json`);
  }
  console.error(`wrote ${written.map((f) => path.relative(process.cwd(), f)).join(', ')}`);
}

if (values.render !== undefined) {
  // Re-render only (the report's text changed, the figures did not): no services are started.
  try {
    const saved = JSON.parse(await readFile(values.render, 'utf8')) as BenchRun & { machine?: MachineInfo };
    if (!Array.isArray(saved.results) || saved.machine === undefined) throw new Error('not a run saved with --json (no results or machine)');
    const { machine, ...run } = saved;
    await writeReport(run, machine, values.out, false);
    process.exit(0);
  } catch (err) {
    console.error(`--render ${values.render}: ${(err as Error).message}; pass BENCHMARKS.json or a file written by \`npm run bench -- --json FILE\``);
    process.exit(2);
  }
}

/**
 * Each side of 10,000 sockets needs that many descriptors plus the reserve; (f) asks one gateway
 * process for holdConnections (it holds what the limit allows and the report says so).
 */
function requiredNofile(dialogs: number, holdConnections: number | undefined): number {
  return openFileLimitFor(Math.max(dialogs * 2, holdConnections ?? 0));
}

function softNofile(): number {
  const r = spawnSync('bash', ['-c', 'ulimit -Sn'], { encoding: 'utf8' });
  return r.stdout.trim() === 'unlimited' ? Number.POSITIVE_INFINITY : Number(r.stdout.trim());
}

function positive(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) {
    console.error(`--${name} must be a positive number, got ${raw}`);
    process.exit(2);
  }
  return n;
}

const base = values.smoke ? SMOKE_RUN : FULL_RUN;
const systems = (values.systems?.split(',').map((s) => s.trim()) ?? [...SYSTEM_NAMES]) as SystemName[];
const unknown = systems.filter((s) => !(SYSTEM_NAMES as readonly string[]).includes(s));
if (unknown.length > 0) {
  console.error(`unknown system(s): ${unknown.join(', ')}; choose from ${SYSTEM_NAMES.join(', ')}`);
  process.exit(2);
}
const scenarios = (values.scenarios?.split(',').map((s) => s.trim()) ?? [...SCENARIO_NAMES]) as ScenarioName[];
const unknownScenarios = scenarios.filter((s) => !(SCENARIO_NAMES as readonly string[]).includes(s));
if (unknownScenarios.length > 0 || scenarios.length === 0) {
  console.error(`unknown scenario(s): ${unknownScenarios.join(', ') || '(none given)'}; choose from ${SCENARIO_NAMES.join(', ')}`);
  process.exit(2);
}
const dialogs = positive('dialogs', values.dialogs, base.dialogs);

// Children inherit our RLIMIT_NOFILE; Node cannot raise it, so re-exec once through bash.
const holdConnections = scenarios.includes('hold') ? positive('hold-connections', values['hold-connections'], base.holdConnections) : undefined;
const stormClients = scenarios.includes('storm') ? positive('storm-clients', values['storm-clients'], base.storm.clients) : 0;
// The storm's nginx workers hold two descriptors per client: they get the hard limit.
const hardNofile = Number(spawnSync('bash', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).stdout.trim()) || Number.POSITIVE_INFINITY;
const need = Math.min(hardNofile, requiredNofile(Math.max(dialogs, stormClients), holdConnections));
if (softNofile() < need && process.env.REPLYX_BENCH_NOFILE !== String(need)) {
  const script = 'ulimit -Sn "$1" 2>/dev/null || ulimit -Sn "$(ulimit -Hn)"; shift; exec "$@"';
  const r = spawnSync('bash', ['-c', script, 'bash', String(need), process.execPath, ...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, REPLYX_BENCH_NOFILE: String(need) },
  });
  process.exit(r.status ?? 1);
}
if (softNofile() < need) console.error(`warning: open-file limit ${softNofile()} < ${need}; the largest scenarios may fail to connect everyone (raise ulimit -n)${holdConnections ? '; (f) holds what the limit allows and the report says so' : ''}`);

const profileDir = path.join(REPO_ROOT, '.stack', 'bench-profiles');
if (values.profile) await mkdir(profileDir, { recursive: true });

const opts: BenchOptions = {
  ...base,
  systems,
  scenarios,
  dialogs,
  fanoutSubscribers: positive('fanout-subscribers', values['fanout-subscribers'], base.fanoutSubscribers),
  fanoutEvents: positive('fanout-events', values['fanout-events'], base.fanoutEvents),
  manyRatePerS: positive('rate', values.rate, base.manyRatePerS),
  manyDurationS: positive('duration', values.duration, base.manyDurationS),
  manyRuns: positive('many-runs', values['many-runs'], base.manyRuns),
  holdConnections: holdConnections ?? base.holdConnections,
  holdSeconds: positive('hold-seconds', values['hold-seconds'], base.holdSeconds),
  holdGenerators: positive('hold-generators', values['hold-generators'], base.holdGenerators),
  holdSourceAddresses: positive('hold-sources', values['hold-sources'], base.holdSourceAddresses),
  gatewayHeartbeatMs: values['heartbeat-ms'] === undefined ? base.gatewayHeartbeatMs : positive('heartbeat-ms', values['heartbeat-ms'], 1),
  connectCount: positive('connect-count', values['connect-count'], base.connectCount),
  connectWarmup: values['connect-warmup'] === '0' ? 0 : positive('connect-warmup', values['connect-warmup'], base.connectWarmup),
  connectRuns: positive('connect-runs', values['connect-runs'], base.connectRuns),
  connectConcurrency: positive('connect-concurrency', values['connect-concurrency'], base.connectConcurrency),
  generators: positive('generators', values.generators, base.generators),
  openConcurrency: positive('open-concurrency', values['open-concurrency'], base.openConcurrency),
  storm: {
    ...base.storm,
    clients: positive('storm-clients', values['storm-clients'], base.storm.clients),
    ratePerS: positive('storm-rate', values['storm-rate'], base.storm.ratePerS),
    replicas: values['storm-replicas']?.split(',').map((r) => positive('storm-replicas', r.trim(), 1)) ?? base.storm.replicas,
    ...(values['storm-drain-window-ms'] !== undefined ? { drainWindowMs: positive('storm-drain-window-ms', values['storm-drain-window-ms'], 1) } : {}),
  },
  keepDir: values.keep,
  pushpinLogLevel: values['pushpin-log-level'] === undefined ? undefined : Number(values['pushpin-log-level']),
  gatewayNodeArgs: [
    ...(values.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, '--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${profileDir}`] : []),
    // Node flags to try on the gateway only (e.g. GC sizing), without touching the load processes.
    ...(values['gateway-node-args']?.split(' ').filter(Boolean) ?? []),
  ],
  heapSnapshotDir: values.profile ? profileDir : undefined,
  log: (line) => console.error(line),
};

try {
  const run = await runBench(opts);
  const machine = machineInfo();
  console.log(renderTable(run));
  if (values.json) await writeFile(values.json, savedRunText(run, machine));
  if (!values['no-write']) await writeReport(run, machine, values.out, true);
  if (values.profile) console.error(`gateway CPU profile and heap snapshot in ${profileDir} (open them in Chrome DevTools)`);
  process.exit(run.results.some((r) => r.error) ? 1 : 0);
} catch (err) {
  console.error(formatErrorForCli(err));
  process.exit(1);
}
