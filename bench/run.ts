#!/usr/bin/env tsx
// `npm run bench`: runs every scenario against every system on this machine, prints the table,
// and rewrites BENCHMARKS.md and BENCHMARKS.svg. `--smoke` runs seconds-long sizes instead.
import { spawnSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { formatErrorForCli } from '../infra/errors.js';
import { FULL_RUN, SMOKE_RUN, runBench, type BenchOptions } from './harness.js';
import { machineInfo, renderMarkdown, renderSvg, renderTable } from './report.js';
import { REPO_ROOT } from './systems/start.js';
import { SYSTEM_NAMES, type SystemName } from './systems/system.js';

const { values } = parseArgs({
  options: {
    smoke: { type: 'boolean', default: false },
    systems: { type: 'string' },
    dialogs: { type: 'string' },
    'fanout-subscribers': { type: 'string' },
    'fanout-events': { type: 'string' },
    rate: { type: 'string' },
    duration: { type: 'string' },
    'connect-count': { type: 'string' },
    generators: { type: 'string' },
    'open-concurrency': { type: 'string' },
    profile: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    'no-write': { type: 'boolean', default: false },
    json: { type: 'string' },
    'pushpin-log-level': { type: 'string' },
    out: { type: 'string', default: path.join(REPO_ROOT, 'BENCHMARKS.md') },
    help: { type: 'boolean', default: false },
  },
});

if (values.help) {
  console.log(`usage: npm run bench -- [--smoke] [--systems ${SYSTEM_NAMES.join(',')}] [--dialogs N] [--fanout-subscribers N]
       [--fanout-events N] [--rate N] [--duration S] [--connect-count N] [--generators N] [--open-concurrency N]
       [--profile] [--keep] [--no-write] [--json run.json] [--out BENCHMARKS.md]`);
  process.exit(0);
}

/** Each side of 10,000 sockets needs that many descriptors plus slack. */
function requiredNofile(dialogs: number): number {
  return dialogs * 2 + 1024;
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
const dialogs = positive('dialogs', values.dialogs, base.dialogs);

// Children inherit our RLIMIT_NOFILE; Node cannot raise it, so re-exec once through bash.
const need = requiredNofile(dialogs);
if (softNofile() < need && process.env.REPLYX_BENCH_NOFILE !== String(need)) {
  const script = 'ulimit -Sn "$1" 2>/dev/null || ulimit -Sn "$(ulimit -Hn)"; shift; exec "$@"';
  const r = spawnSync('bash', ['-c', script, 'bash', String(need), process.execPath, ...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, REPLYX_BENCH_NOFILE: String(need) },
  });
  process.exit(r.status ?? 1);
}
if (softNofile() < need) console.error(`warning: open-file limit ${softNofile()} < ${need}; the largest scenarios may fail to connect everyone (raise ulimit -n)`);

const profileDir = path.join(REPO_ROOT, '.stack', 'bench-profiles');
if (values.profile) await mkdir(profileDir, { recursive: true });

const opts: BenchOptions = {
  ...base,
  systems,
  dialogs,
  fanoutSubscribers: positive('fanout-subscribers', values['fanout-subscribers'], base.fanoutSubscribers),
  fanoutEvents: positive('fanout-events', values['fanout-events'], base.fanoutEvents),
  manyRatePerS: positive('rate', values.rate, base.manyRatePerS),
  manyDurationS: positive('duration', values.duration, base.manyDurationS),
  connectCount: positive('connect-count', values['connect-count'], base.connectCount),
  generators: positive('generators', values.generators, base.generators),
  openConcurrency: positive('open-concurrency', values['open-concurrency'], base.openConcurrency),
  keepDir: values.keep,
  pushpinLogLevel: values['pushpin-log-level'] === undefined ? undefined : Number(values['pushpin-log-level']),
  gatewayNodeArgs: values.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, '--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${profileDir}`] : undefined,
  heapSnapshotDir: values.profile ? profileDir : undefined,
  log: (line) => console.error(line),
};

try {
  const run = await runBench(opts);
  const machine = machineInfo();
  console.log(renderTable(run));
  if (values.json) await writeFile(values.json, `${JSON.stringify({ machine, ...run }, null, 2)}\n`);
  if (!values['no-write']) {
    const svgFile = values.out.replace(/\.md$/, '') + '.svg';
    await writeFile(svgFile, renderSvg(run));
    await writeFile(values.out, renderMarkdown(run, machine, path.basename(svgFile)));
    console.error(`wrote ${path.relative(process.cwd(), values.out)} and ${path.relative(process.cwd(), svgFile)}`);
  }
  if (values.profile) console.error(`gateway CPU profile and heap snapshot in ${profileDir} (open them in Chrome DevTools)`);
  process.exit(run.results.some((r) => r.error) ? 1 : 0);
} catch (err) {
  console.error(formatErrorForCli(err));
  process.exit(1);
}
