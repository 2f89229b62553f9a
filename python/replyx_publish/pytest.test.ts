import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, execaSync } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULTS } from '../../gateway/src/config.js';
import { DEFAULT_IDEMPOTENCY_TTL_S, LIBRARY_NAME, LIBRARY_VERSION, PUBLISH_FUNCTION } from '../../gateway/src/broker/publisher.js';
import { PUBLISH_KEY, TestClient, adminToken, createAccessDatabase, eventually, startGateway, testConfig, type AccessDatabase, type TestGateway } from '../../gateway/test/harness.js';
import { freePort } from '../../infra/targets/local/ports.js';
import { startRedis, type ServiceProcess } from '../../infra/targets/local/processes.js';
import { PYTHON_BIN, PYTHON_PACKAGES } from '../../infra/python/interpreter.js';

// The Python package's pytest suite, run by Debian's python against a Redis of its own (its tests
// flush the function library and add ACL users) and a real gateway; each pytest test becomes one
// vitest test here, so the CI's closing count includes them. Plus the end-to-end path: an event
// the package publishes reaches a WebSocket client of the gateway, once.

const PACKAGE_DIR = fileURLToPath(new URL('.', import.meta.url));

/** One pytest phase report, as tests/conftest.py writes them. */
interface PytestReport {
  readonly nodeid: string;
  readonly when: string;
  readonly outcome: 'passed' | 'failed' | 'skipped';
  readonly longrepr: string;
}

// Collected now (no services needed) so each pytest test is a vitest test of its own.
const collected = execaSync(PYTHON_BIN, ['-m', 'pytest', '--collect-only', '-q', '-p', 'no:cacheprovider'], { cwd: PACKAGE_DIR, reject: false });
const nodeIds = collected.stdout.split('\n').filter((l) => l.includes('::'));

let dir: string;
let redis: ServiceProcess | undefined;
let db: AccessDatabase;
let gw: TestGateway | undefined;
let reports: PytestReport[] = [];
let pytestOutput = '';

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'replyx-pytest-'));
  redis = await startRedis({ dir: path.join(dir, 'redis'), port: await freePort() });
  const redisUrl = `redis://127.0.0.1:${redis.port}`;
  db = await createAccessDatabase();
  gw = await startGateway(testConfig({ databaseUrl: db.url, broker: 'redis', redisUrl }));
  const results = path.join(dir, 'pytest.json');
  const run = await execa(PYTHON_BIN, ['-m', 'pytest', '-q', '-p', 'no:cacheprovider'], {
    cwd: PACKAGE_DIR,
    reject: false,
    timeout: 240_000,
    env: { REPLYX_TEST_REDIS_URL: redisUrl, REPLYX_TEST_GATEWAY_URL: gw.base, REPLYX_TEST_PUBLISH_KEY: PUBLISH_KEY, REPLYX_PYTEST_RESULTS: results },
  });
  pytestOutput = `${run.stdout}\n${run.stderr}`;
  reports = JSON.parse(await readFile(results, 'utf8').catch(() => '[]')) as PytestReport[];
}, 300_000);

afterAll(async () => {
  await gw?.stop();
  await redis?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('pytest: python/replyx_publish', () => {
  it('collects the suite with Debian python3 and its packages', () => {
    expect(collected.exitCode, `${collected.stdout}\n${collected.stderr}`).toBe(0);
    expect(nodeIds.length).toBeGreaterThan(50);
  });

  it.each(nodeIds)('%s', (nodeId) => {
    const mine = reports.filter((r) => r.nodeid === nodeId);
    const bad = mine.filter((r) => r.outcome !== 'passed');
    // Skips count as failures: the live tests skip only when this wrapper did not set them up.
    expect(bad.map((r) => `${r.when} ${r.outcome}: ${r.longrepr}`).join('\n')).toBe('');
    expect(mine.some((r) => r.when === 'call' && r.outcome === 'passed'), `no result for ${nodeId}\n${pytestOutput.slice(-3000)}`).toBe(true);
  });
});

describe('python/replyx_publish end to end', () => {
  it('an event the Python package publishes reaches the gateway clients of the dialog once, in order', async () => {
    const dialog = db.a.dialogs[0]!;
    const client = new TestClient(`${gw!.ws}/ws/dialogs/${dialog}?token=${await adminToken(db.a.userId)}`);
    await client.ready();
    await eventually(async () => ((await (await fetch(`${gw!.base}/api/debug/websocket/sync?dialog_id=${dialog}`)).json()) as { subscribed: boolean }).subscribed);
    const script = [
      'import sys, datetime as dt',
      'from replyx_publish import Publisher',
      'p = Publisher.from_url(sys.argv[1])',
      'for i in range(20): print(p.publish(int(sys.argv[2]), "message:new", {"n": i, "nan": float("nan"), "at": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)}, audience=["admin"], idempotency_key=f"py-e2e-{sys.argv[3]}-{i}").id)',
      'for i in range(20): p.publish(int(sys.argv[2]), "message:new", {"n": i}, idempotency_key=f"py-e2e-{sys.argv[3]}-{i}")',
    ].join('\n');
    const run = await execa(PYTHON_BIN, ['-c', script, `redis://127.0.0.1:${redis!.port}`, String(dialog), String(Date.now())], { cwd: path.join(PACKAGE_DIR, 'src'), reject: false });
    expect(run.stderr).toBe('');
    const ids = run.stdout.trim().split('\n');
    const frames = await client.waitFor((f) => f.json.type === 'message:new', 20);
    expect(frames.map((f) => f.json.id)).toEqual(ids);
    expect(frames.map((f) => (f.json.data as { n: number }).n)).toEqual([...Array(20).keys()]);
    expect(frames[0]!.json.data).toEqual({ n: 0, nan: null, at: '2026-01-01T00:00:00.000Z' });
    // The 20 retries published nothing: a marker published afterwards is the next frame.
    await execa(PYTHON_BIN, ['-c', 'import sys; from replyx_publish import Publisher; Publisher.from_url(sys.argv[1]).publish(int(sys.argv[2]), "marker", None)', `redis://127.0.0.1:${redis!.port}`, String(dialog)], { cwd: path.join(PACKAGE_DIR, 'src') });
    const after = await client.waitFor((f) => f.json.type === 'marker');
    expect(client.frames.filter((f) => f.json.type === 'message:new')).toHaveLength(20);
    expect(after).toHaveLength(1);
    await client.close();
  });

  it("the package's history and idempotency defaults are the gateway's", async () => {
    const run = await execa(PYTHON_BIN, ['-c', 'from replyx_publish.call import *; print(DEFAULT_HISTORY_LENGTH, DEFAULT_HISTORY_TTL_S, DEFAULT_IDEMPOTENCY_TTL_S)'], { cwd: path.join(PACKAGE_DIR, 'src') });
    expect(run.stdout.trim()).toBe(`${DEFAULTS.HISTORY_LENGTH} ${DEFAULTS.HISTORY_TTL_S} ${DEFAULT_IDEMPOTENCY_TTL_S}`);
  });

  it('the package reads the library the gateway ships (same file, name, version and function)', async () => {
    const run = await execa(PYTHON_BIN, ['-c', 'from replyx_publish.library import *; l = read_library(); print(l.path, l.name, l.version, PUBLISH_FUNCTION)'], { cwd: path.join(PACKAGE_DIR, 'src') });
    const gatewayFile = fileURLToPath(new URL('../../gateway/src/broker/replyx.lua', import.meta.url));
    expect(run.stdout.trim()).toBe(`${gatewayFile} ${LIBRARY_NAME} ${LIBRARY_VERSION} ${PUBLISH_FUNCTION}`);
  });
});

describe('python packages in CI', () => {
  it('.ci/run installs exactly the Debian packages infra/python/interpreter.ts lists', () => {
    const ci = readFileSync(new URL('../../.ci/run', import.meta.url), 'utf8');
    const pairs = /for pair in ([^;]+); do/.exec(ci)?.[1]?.trim().split(/\s+/) ?? [];
    expect(pairs).toEqual(PYTHON_PACKAGES.map((p) => `${p.module}:${p.pkg}`));
  });
});
