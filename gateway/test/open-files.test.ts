import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGateway, type Gateway } from '../src/server.js';
import { connectionCapacity, OPEN_FILE_RESERVE, openFileWarning, parseOpenFileLimits, readOpenFileLimits, type OpenFileLimits } from '../src/limits/open-files.js';
import { captureLogs, createAccessDatabase, testConfig, type AccessDatabase } from './harness.js';

const PROC_LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            20000                20000                files
Max locked memory         8388608              8388608              bytes
`;

describe('open-file limit (pure)', () => {
  it('reads the soft and hard "Max open files" of /proc/<pid>/limits, leaving out what is unlimited', () => {
    expect(parseOpenFileLimits(PROC_LIMITS)).toEqual({ soft: 20_000, hard: 20_000 });
    expect(parseOpenFileLimits(PROC_LIMITS.replace('20000                20000', '1024                 unlimited'))).toEqual({ soft: 1024 });
    expect(parseOpenFileLimits('no such line')).toEqual({});
  });

  it('reads this process its own limits, the ones ulimit shows', () => {
    const shell = (flag: string) => execFileSync('bash', ['-c', `ulimit ${flag}`], { encoding: 'utf8' }).trim();
    const number = (v: string) => (v === 'unlimited' ? undefined : Number(v));
    expect(readOpenFileLimits()).toEqual(JSON.parse(JSON.stringify({ soft: number(shell('-Sn')), hard: number(shell('-Hn')) })));
  });

  it('bounds connections by MAX_CONNECTIONS, or by the soft limit minus the reserve when that is lower', () => {
    expect(connectionCapacity(50_000, { soft: 20_000, hard: 20_000 })).toEqual({ maxConnections: 50_000, openFileLimit: 20_000, connections: 20_000 - OPEN_FILE_RESERVE, limitedByOpenFiles: true });
    expect(connectionCapacity(5000, { soft: 20_000 })).toEqual({ maxConnections: 5000, openFileLimit: 20_000, connections: 5000, limitedByOpenFiles: false });
    // Exactly MAX_CONNECTIONS + reserve is enough.
    expect(connectionCapacity(19_000, { soft: 20_000 }).limitedByOpenFiles).toBe(false);
    expect(connectionCapacity(19_001, { soft: 20_000 }).limitedByOpenFiles).toBe(true);
    for (const unknown of [{}, undefined]) expect(connectionCapacity(50_000, unknown)).toEqual({ maxConnections: 50_000, openFileLimit: undefined, connections: 50_000, limitedByOpenFiles: false });
    expect(connectionCapacity(50_000, { soft: 100 }).connections).toBe(0);
  });

  it('warns with the code, the figures and both fixes only when the limit is the bound', () => {
    const line = openFileWarning(connectionCapacity(50_000, { soft: 20_000 }));
    expect(line).toMatch(/^RPX_GATEWAY_NOFILE: open-file limit 20,000 is below MAX_CONNECTIONS 50,000 \+ 1,000 reserved descriptors, so this gateway holds at most 19,000 connections/);
    expect(line).toMatch(/raise the limit to at least 51,000 \(ulimit -n, systemd LimitNOFILE=, the container's nofile ulimit\) or lower MAX_CONNECTIONS to 19,000$/);
    expect(line).not.toContain('\n');
    expect(openFileWarning(connectionCapacity(5000, { soft: 20_000 }))).toBeUndefined();
    expect(openFileWarning(connectionCapacity(50_000, {}))).toBeUndefined();
  });
});

describe('gateway start with its open-file limit', () => {
  let db: AccessDatabase;
  const running: Gateway[] = [];
  beforeAll(async () => {
    db = await createAccessDatabase();
  });
  afterAll(async () => {
    for (const g of running) await g.close();
  });

  /** Starts a gateway with `maxConnections` and (unless omitted) the given limits; returns its log lines and its capacity metric. */
  async function start(maxConnections: number, openFileLimits?: OpenFileLimits) {
    const { logs, stream } = captureLogs();
    const gateway = createGateway(testConfig({ databaseUrl: db.url, maxConnections, instanceId: 'gw-nofile' }), { logStream: stream, processMetrics: false, ...(openFileLimits ? { openFileLimits } : {}) });
    running.push(gateway);
    const port = await gateway.listen();
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const capacity = Number(/^replyx_gateway_connection_capacity (\d+)$/m.exec(metrics)?.[1]);
    const warnings = logs.map((l) => JSON.parse(l) as { level: number; code?: string; msg: string; open_file_limit?: number; connection_capacity?: number }).filter((l) => l.code === 'RPX_GATEWAY_NOFILE');
    return { warnings, capacity };
  }

  it('logs one RPX_GATEWAY_NOFILE warning line and exposes the bound when the limit is below MAX_CONNECTIONS + reserve', async () => {
    const { warnings, capacity } = await start(50_000, { soft: 20_000, hard: 20_000 });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ level: 40, open_file_limit: 20_000, connection_capacity: 19_000 });
    expect(warnings[0]!.msg).toMatch(/^RPX_GATEWAY_NOFILE: open-file limit 20,000 is below MAX_CONNECTIONS 50,000/);
    expect(capacity).toBe(19_000);
  });

  it('stays quiet and exposes MAX_CONNECTIONS when the limit covers it; reads its own limit when none is given', async () => {
    expect(await start(500, { soft: 20_000 })).toEqual({ warnings: [], capacity: 500 });
    // This machine's own limit (read from /proc/self/limits): quiet under it, a warning above it.
    const soft = readOpenFileLimits()?.soft;
    expect(await start(100)).toEqual({ warnings: [], capacity: 100 });
    const over = await start(soft ?? 10_000_000);
    // An unlimited soft limit bounds nothing.
    expect(over).toMatchObject(soft === undefined ? { warnings: [], capacity: 10_000_000 } : { warnings: [expect.objectContaining({ open_file_limit: soft })], capacity: soft - OPEN_FILE_RESERVE });
  });
});
