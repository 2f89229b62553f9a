import { execFileSync } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sharedRedisUrl } from '../../test/services.js';
import { createGateway, type Gateway } from '../src/server.js';
import { connectionCapacity, OPEN_FILE_RESERVE, openFileLimitFor, openFileWarning, parseOpenFileLimits, readOpenFileLimits, type OpenFileLimits } from '../src/limits/open-files.js';
import { SECRETS_ENV, TestClient, adminToken, captureLogs, createAccessDatabase, testConfig, type AccessDatabase } from './harness.js';

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

  it('sizes a limit as the connection descriptors plus the reserve, the inverse of the capacity', () => {
    expect(openFileLimitFor(50_000)).toBe(51_000);
    for (const max of [1, 500, 50_000]) {
      expect(connectionCapacity(max, { soft: openFileLimitFor(max) })).toMatchObject({ connections: max, limitedByOpenFiles: false });
      expect(connectionCapacity(max, { soft: openFileLimitFor(max) - 1 })).toMatchObject({ connections: max - 1, limitedByOpenFiles: true });
    }
  });

  it('warns with the code, the figures and both fixes only when the limit is the bound', () => {
    const line = openFileWarning(connectionCapacity(50_000, { soft: 20_000 }));
    expect(line).toMatch(/^RPX_GATEWAY_NOFILE: open-file limit 20,000 is below MAX_CONNECTIONS 50,000 \+ 1,000 reserved descriptors, so this gateway admits at most 19,000 connections \(more close with 4100\)/);
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

describe('gateway process under a low open-file limit', () => {
  const repo = path.resolve(new URL('../..', import.meta.url).pathname);
  // 1,100 descriptors: 100 connections after the reserve. 1,150 clients ask for more than the
  // process could open at all, so without the bound the ones past ~1,050 would meet EMFILE (a reset).
  const LIMIT = 1100;
  const CLIENTS = 1150;
  let db: AccessDatabase;
  let child: ResultPromise | undefined;
  beforeAll(async () => {
    db = await createAccessDatabase();
  });
  afterAll(() => {
    if (child?.exitCode === null) child.kill('SIGKILL');
  });

  it('admits its soft limit minus the reserve and closes every connection past it with 4100, never a reset', async () => {
    // `ulimit -n` sets the soft and the hard limit; the gateway starts under it as it would from such a shell.
    child = execa('bash', ['-c', 'ulimit -n "$1" && shift && exec "$@"', 'bash', String(LIMIT), process.execPath, '--import', 'tsx', 'gateway/src/main.ts'], {
      cwd: repo,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '/tmp',
        PORT: '0',
        HOST: '127.0.0.1',
        DATABASE_URL: db.url,
        REDIS_URL: sharedRedisUrl(),
        ...SECRETS_ENV,
        // Every client comes from 127.0.0.1: only the open-file bound may refuse them.
        MAX_CONNECTIONS_PER_IP: '100000',
        HANDSHAKES_PER_IP_PER_SECOND: '100000',
        // A short drain, so the SIGTERM at the end exits soon even on a loaded machine.
        DRAIN_WINDOW_MS: '200',
      },
      extendEnv: false,
      reject: false,
      // The exit code after SIGTERM is checked: no SIGKILL from execa while the gateway drains.
      forceKillAfterDelay: false,
    });
    type Line = { code?: string; port?: number; ready?: boolean; connection_capacity?: number; open_file_limit?: number };
    const lines: Line[] = [];
    // The warning follows the `ready` line; both must have come.
    const port = await new Promise<number>((resolve, reject) => {
      readline.createInterface({ input: child!.stdout! }).on('line', (text) => {
        lines.push(JSON.parse(text) as Line);
        const ready = lines.find((l) => l.ready);
        if (ready?.port !== undefined && lines.some((l) => l.code === 'RPX_GATEWAY_NOFILE')) resolve(ready.port);
      });
      void child!.then((r) => reject(new Error(`gateway exited with ${r.exitCode} before listening: ${JSON.stringify(lines)} ${String(r.stderr)}`)));
    });
    expect(lines.find((l) => l.code === 'RPX_GATEWAY_NOFILE')).toMatchObject({ open_file_limit: LIMIT, connection_capacity: LIMIT - OPEN_FILE_RESERVE });
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(Number(/^replyx_gateway_connection_capacity (\d+)$/m.exec(metrics)?.[1])).toBe(LIMIT - OPEN_FILE_RESERVE);

    const url = `ws://127.0.0.1:${port}/ws/dialogs/${db.a.dialogs[0]}?token=${await adminToken(db.a.userId)}`;
    const held: TestClient[] = [];
    const codes = new Map<number, number>();
    const started = Date.now();
    // In waves of 50, so the machine's other work does not turn slow handshakes into timeouts.
    for (let i = 0; i < CLIENTS; i += 50) {
      const wave = Array.from({ length: Math.min(50, CLIENTS - i) }, () => new TestClient(url));
      await Promise.all(
        wave.map(async (c) => {
          // A held connection gets its `connected` frame; a refused one its close.
          const outcome = await Promise.race([c.waitFor((f) => f.json.type === 'connected', 1, 20_000).then(() => 'held' as const), c.closed.then(() => 'closed' as const)]);
          if (outcome === 'held' && c.closeCode === undefined) held.push(c);
          else {
            const { code } = await c.closed;
            codes.set(code, (codes.get(code) ?? 0) + 1);
          }
        }),
      );
    }
    console.log(`[nofile] ${CLIENTS} clients against a gateway under ulimit -n ${LIMIT}: ${held.length} held, closes ${JSON.stringify(Object.fromEntries(codes))} in ${Date.now() - started} ms`);
    expect(held).toHaveLength(LIMIT - OPEN_FILE_RESERVE);
    expect(Object.fromEntries(codes)).toEqual({ 4100: CLIENTS - (LIMIT - OPEN_FILE_RESERVE) });
    // The held ones are still served after the refusals.
    for (const c of held.slice(0, 3)) {
      c.ws.send(JSON.stringify({ type: 'ping' }));
      await c.waitFor((f) => f.json.type === 'pong');
    }
    for (const c of held) c.ws.close();
    child.kill('SIGTERM');
    const exited = await child;
    expect(exited.exitCode, `${exited.signal ?? ''} ${String(exited.stderr)}`).toBe(0);
  }, 120_000);
});
