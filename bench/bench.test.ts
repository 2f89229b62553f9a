import { execFile } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../infra/targets/local/ports.js';
import { startRedis, type ServiceProcess } from '../infra/targets/local/processes.js';
import { createTestDatabase } from '../test/services.js';
import { eventData, eventFrame, fillerText, parseEventStamp } from './event.js';
import { SMOKE_RUN, runBench, type BenchRun, type SystemResult } from './harness.js';
import { checkAims, ratio, renderMarkdown, renderSvg, renderTable } from './report.js';
import { renderPushpinConfig, renderPushpinRoutes } from './systems/pushpin-config.js';

// The harness end to end at seconds-long sizes (keeps `npm run bench` from rotting), plus the
// pure parts: event stamps, Pushpin config, report rendering. Speed targets live in
// BENCHMARKS.md, never in assertions here.

describe('bench event stamps', () => {
  it('reads sequence and publish time back from a gateway-shaped frame', () => {
    const data = eventData(42, fillerText(64));
    const stamp = parseEventStamp(eventFrame(7, data));
    expect(stamp).toEqual({ s: 42, t: data.t });
  });

  it('reads the stamp from the gateway frame layout with id first and ts last', () => {
    const frame = '{"id":"1732780000000-3","type":"message:new","dialog_id":9,"data":{"s":3,"t":1732780000123.456,"text":"hi"},"ts":1732780000124}';
    expect(parseEventStamp(frame)).toEqual({ s: 3, t: 1732780000123.456 });
  });

  it('ignores frames that are not bench events', () => {
    expect(parseEventStamp('{"type":"connected","server":"ws-gateway","instance":"x","heartbeat_ms":25000}')).toBeUndefined();
    expect(parseEventStamp('{"type":"pong"}')).toBeUndefined();
  });

  it('makes filler text of exactly the requested size', () => {
    expect(fillerText(0)).toBe('');
    expect(fillerText(300)).toHaveLength(300);
  });
});

describe('pushpin config', () => {
  const input = { dir: '/tmp/pp', httpPort: 1001, publishPort: 1002, zmqPushPort: 1003, zmqSubPort: 1004, zmqCommandPort: 1005, originPort: 1006, sigKey: 'k' };

  it('keeps every port and runtime path private to the run', () => {
    const conf = renderPushpinConfig(input);
    expect(conf).toContain('http_port=127.0.0.1:1001');
    expect(conf).toContain('push_in_http_port=1002');
    expect(conf).toContain('push_in_spec=tcp://127.0.0.1:1003');
    expect(conf).toContain('rundir=/tmp/pp/run');
    expect(conf).toContain('zurl_out_specs=ipc://{rundir}/{ipc_prefix}zurl-in');
    expect(conf).not.toMatch(/\/var\/run|\/var\/log/);
  });

  it('raises the publish throttle above Debian\'s 2500/s unless told otherwise', () => {
    expect(renderPushpinConfig(input)).toContain('message_rate=1000000');
    expect(renderPushpinConfig({ ...input, messageRate: 2500 })).toContain('message_rate=2500');
  });

  it('routes everything to the origin over WebSocket-over-HTTP', () => {
    expect(renderPushpinRoutes(1006)).toBe('* 127.0.0.1:1006,over_http\n');
  });
});

function delivery(p99: number, perS: number) {
  return { connections: 10, published: 5, publishFailed: 0, expected: 50, received: 50, lost: 0, extra: 0, dropped: 0, latency: { p50: p99 / 2, p99, max: p99 * 2, samples: 50 }, deliveredPerS: perS, seconds: 1, serverCpuPct: 50, deliveriesPerCpuS: perS * 2, loadCpuPct: 80, errors: [] };
}

function fakeResult(system: SystemResult['system'], label: string, perS: number, p99: number, bytes: number): SystemResult {
  return {
    system,
    label,
    versions: {},
    idle: { connections: 10, failed: 0, connectErrors: [], rssBeforeBytes: 1e6, rssAfterBytes: 1e6 + bytes * 10, bytesPerConnection: bytes },
    many: delivery(p99, perS / 10),
    fanout: delivery(p99, perS),
    connects: { attempted: 10, ok: 10, failed: 0, perS: 100, authenticated: system === 'ours', errors: [] },
  };
}

const fakeRun: BenchRun = {
  startedAt: '2026-11-28T08:00:00.000Z',
  finishedAt: '2026-11-28T08:05:00.000Z',
  options: { ...SMOKE_RUN, systems: ['ours', 'pushpin', 'socketio', 'ws-floor'], dialogs: 5 },
  backingVersions: { redis: '7.0.15' },
  loadAvgBefore: [0.1, 0.2, 0.3],
  loadAvgAfter: [1, 1, 1],
  results: [
    fakeResult('ours', 'replyx ws-gateway', 800, 10, 8000),
    fakeResult('pushpin', 'Pushpin', 1000, 20, 4000),
    { system: 'socketio', label: 'Socket.IO + Redis adapter', versions: {}, error: 'did not start' },
    fakeResult('ws-floor', 'bare ws (floor)', 1000, 5, 3000),
  ],
};

describe('report', () => {
  it('computes ratios as ours over peer and refuses missing or zero figures', () => {
    expect(ratio(800, 1000)).toBe('0.80x');
    expect(ratio(800, 0)).toBe('–');
    expect(ratio(undefined, 10)).toBe('–');
  });

  it('checks every aim, marking ones without figures as unknown', () => {
    const aims = checkAims(fakeRun);
    const byAim = (prefix: string) => aims.filter((a) => a.aim.startsWith(prefix));
    expect(byAim('fan-out deliveries/s >= 1.0x Pushpin')[0]?.met).toBe(false);
    expect(byAim('fan-out deliveries/s >= 1.0x socketio')[0]?.met).toBeUndefined();
    expect(byAim('fan-out deliveries/s >= 0.7x bare ws')[0]?.met).toBe(true);
    expect(byAim('p99 no worse than Pushpin')[0]?.met).toBe(true);
    expect(byAim('<= 10 KB RSS')[0]?.met).toBe(true);
    expect(byAim('10 connections held')[0]?.met).toBe(true);
  });

  it('renders a table, markdown with ratios and failures, and a well-formed SVG', () => {
    expect(renderTable(fakeRun).split('\n')).toHaveLength(2 + fakeRun.results.length);
    const md = renderMarkdown(fakeRun, { cpuModel: 'Test CPU', cores: 2, ramGiB: 4, kernel: 'Linux 6', node: 'v20' }, 'BENCHMARKS.svg');
    expect(md).toContain('Test CPU, 2 cores, 4.0 GiB RAM');
    expect(md).toContain('| Pushpin | 0.80x | 0.80x | 0.50x |');
    expect(md).toContain('Socket.IO + Redis adapter: failed — did not start');
    const svg = renderSvg(fakeRun);
    expect(svg.startsWith('<svg ')).toBe(true);
    expect(svg.trim().endsWith('</svg>')).toBe(true);
    expect(svg).toContain('failed');
    expect(svg).not.toMatch(/NaN|Infinity/);
  });
});

describe('npm run bench -- --render', () => {
  const runCli = (args: string[]) => promisify(execFile)(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'run.ts'), ...args], { encoding: 'utf8' });

  it('rewrites the report and chart from saved figures without starting anything', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'replyx-bench-render-'));
    try {
      const machine = { cpuModel: 'Saved CPU', cores: 2, ramGiB: 4, kernel: 'Linux 6', node: 'v20' };
      await writeFile(path.join(dir, 'run.json'), JSON.stringify({ machine, ...fakeRun }));
      await runCli(['--render', path.join(dir, 'run.json'), '--out', path.join(dir, 'B.md')]);
      expect(await readFile(path.join(dir, 'B.md'), 'utf8')).toBe(renderMarkdown(fakeRun, machine, 'B.svg'));
      expect(await readFile(path.join(dir, 'B.svg'), 'utf8')).toBe(renderSvg(fakeRun));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses a file that is not a saved run, saying what to pass', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'replyx-bench-render-'));
    try {
      await writeFile(path.join(dir, 'other.json'), '{"results": []}');
      const failed = await runCli(['--render', path.join(dir, 'other.json'), '--out', path.join(dir, 'B.md')]).then(
        () => undefined,
        (err: { code: number; stderr: string }) => err,
      );
      expect(failed?.code).toBe(2);
      expect(failed?.stderr).toMatch(/not a run saved with --json.*pass BENCHMARKS\.json/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('bench smoke run (tiny sizes, real processes)', () => {
  let dir: string;
  let redis: ServiceProcess;
  let run: BenchRun;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'replyx-bench-test-'));
    await chmod(dir, 0o755);
    // Our own Redis: the bench publishes to dialogs 1..N, which other suites' gateways may watch.
    redis = await startRedis({ dir, port: await freePort() });
    run = await runBench({
      ...SMOKE_RUN,
      dialogs: 10,
      fanoutSubscribers: 10,
      fanoutEvents: 10,
      manyRatePerS: 100,
      manyDurationS: 1,
      connectCount: 10,
      systems: ['ours', 'ws-floor', 'socketio'],
      redisUrl: `redis://127.0.0.1:${redis.port}`,
      databaseUrl: await createTestDatabase('bench'),
      log: () => undefined,
    });
  }, 180_000);

  afterAll(async () => {
    await redis?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it.each(['ours', 'ws-floor', 'socketio'] as const)('%s: every scenario produced figures with nothing lost', (name) => {
    const r = run.results.find((x) => x.system === name);
    expect(r?.error).toBeUndefined();
    expect(r?.idle).toMatchObject({ connections: 20, failed: 0 });
    expect(r?.idle?.rssAfterBytes).toBeGreaterThan(0);
    for (const d of [r?.many, r?.fanout]) {
      expect(d?.published).toBeGreaterThan(0);
      expect(d?.received).toBe(d?.expected);
      expect(d?.lost).toBe(0);
      expect(d?.dropped).toBe(0);
      expect(d?.latency.samples).toBe(d?.received);
      expect(d?.latency.p99).toBeGreaterThan(0);
      expect(d?.deliveredPerS).toBeGreaterThan(0);
    }
    expect(r?.many?.expected).toBe(100 * 2);
    expect(r?.fanout?.expected).toBe(10 * 10);
    expect(r?.connects).toMatchObject({ attempted: 10, ok: 10, failed: 0 });
    expect(r?.connects?.perS).toBeGreaterThan(0);
    // 10 connects may take less than one 10 ms CPU tick: present, not necessarily positive.
    expect(r?.connects?.serverCpuMsPerConnect).toEqual(expect.any(Number));
    expect(r?.connects?.backingCpuMsPerConnect).toEqual(expect.any(Number));
    expect(r?.connects?.clientCpuMsPerConnect).toEqual(expect.any(Number));
  });

  it('authenticates only on our gateway and reports versions', () => {
    expect(run.results.find((r) => r.system === 'ours')?.connects?.authenticated).toBe(true);
    expect(run.results.find((r) => r.system === 'ws-floor')?.connects?.authenticated).toBe(false);
    expect(run.backingVersions.redis).toMatch(/^\d+\./);
  });

  it('--scenarios: runs only the scenarios asked for, and reports server CPU per connect', async () => {
    const only = await runBench({
      ...SMOKE_RUN,
      dialogs: 10,
      connectCount: 10,
      systems: ['ws-floor'],
      scenarios: ['connects'],
      redisUrl: `redis://127.0.0.1:${redis.port}`,
      log: () => undefined,
    });
    const r = only.results[0];
    expect(r?.error).toBeUndefined();
    expect([r?.idle, r?.many, r?.fanout]).toEqual([undefined, undefined, undefined]);
    expect(r?.connects).toMatchObject({ attempted: 10, ok: 10, failed: 0 });
    expect(r?.connects?.serverCpuMsPerConnect).toBeGreaterThanOrEqual(0);
  }, 120_000);
});
