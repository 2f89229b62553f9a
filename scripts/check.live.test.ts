import { appendFile, readFile, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixCommands, runCheck, type CheckReport } from '../infra/operate/check.js';
import { redisAdminCommand } from '../infra/operate/probes.js';
import { resolveContext } from '../infra/operate/stack.js';
import { reloadAndWait } from '../infra/targets/local/nginx-workers.js';
import { freePorts, waitUntil } from '../infra/targets/local/ports.js';
import { secretsFile } from '../infra/targets/local/secrets.js';
import { stopWatchdog } from '../infra/targets/local/local-stack.js';
import { readPid } from '../infra/targets/local/supervisor.js';
import { runOperatorScript } from '../test/live-clients.js';
import { startOperatorTestStack, type OperatorTestStack } from '../test/operator-stack.js';
import { stackMain } from './stack.js';

// The check against hand-made misconfigurations of one live local stack (Postgres, Redis,
// backend, gateway, nginx on free ports), the way an on-call engineer or a stray script breaks
// it: each case breaks something, the check must fail naming it, the fixes the check printed are
// run exactly as printed, and the check must pass again. One table: a new case is one line.

let stack: OperatorTestStack;
const timings: Record<string, number> = {};

const spec = (name: string) => stack.handle.plan.services.find((s) => s.name === name)!;
const pidOf = async (name: string) => (await readPid(spec(name).pidFile))!;
const confFile = () => stack.handle.plan.nginxConfigFile;

/** Edits the config nginx runs (its checksum header kept) and reloads it, as a hand edit would. */
async function editRunningNginx(edit: (text: string) => string, reload = true): Promise<void> {
  const before = await readFile(confFile(), 'utf8');
  const after = edit(before);
  expect(after, 'the edit changed nothing').not.toBe(before);
  expect(after.split('\n')[0]).toBe(before.split('\n')[0]);
  await writeFile(confFile(), after);
  if (reload) expect((await reloadAndWait(await pidOf('nginx'))).reloaded).toBe(true);
}

/**
 * SIGKILL, as the OOM killer does; waits until the process is gone. The stack's watchdog is
 * stopped first: these cases judge what the check sees of a crash, and the watchdog would race
 * them by restarting the service (its own test is test/reliability.live.test.ts).
 */
async function killHard(name: string): Promise<void> {
  // A fix run earlier (npm start) may have started the watchdog again.
  await stopWatchdog(stack.stateDir);
  const pid = await pidOf(name);
  process.kill(pid, 'SIGKILL');
  await waitUntil(async () => !(await readFile(`/proc/${pid}/cmdline`, 'utf8').then((c) => c.length > 0, () => false)), 5000, 20);
}

/** Replaces `from` inside the `location <path>` block only. */
const inLocation = (path: string, from: RegExp, to: string) => (text: string) => text.replace(new RegExp(`(location ${path.replace(/[/^]/g, '\\$&')} \\{[\\s\\S]*?)${from.source}`), `$1${to}`);

/** Edits the stack file (a topology change nobody applied). */
async function editStackFile(edit: (text: string) => string): Promise<void> {
  const before = await readFile(stack.stackFile, 'utf8');
  const after = edit(before);
  expect(after).not.toBe(before);
  await writeFile(stack.stackFile, after);
}

async function check(): Promise<CheckReport> {
  return runCheck(await resolveContext({ stack: 'local', 'project-dir': stack.projectDir, 'state-dir': stack.stateDir }), { selector: ['--project-dir', stack.projectDir, '--state-dir', stack.stateDir] });
}

const failing = (r: CheckReport) => r.results.filter((x) => x.status === 'fail');
const describeRows = (r: CheckReport) => failing(r).map((x) => `${x.id} (${x.against}): ${x.detail} -> ${x.fix}`);

/**
 * Runs a printed command as printed: `npm run stack -- …` is scripts/stack.ts's parser and
 * handler with those arguments (in this process, which saves a tsx start per case); other
 * scripts run as processes.
 */
async function runPrinted(argv: readonly string[]): Promise<void> {
  const [npm, run, script, dashes, ...args] = argv;
  expect([npm, run, dashes]).toEqual(['npm', 'run', '--']);
  if (script === 'stack') {
    expect(await stackMain(args), argv.join(' ')).toBe(0);
    return;
  }
  const file = { rollback: 'rollback.ts', check: 'check-architecture.ts', health: 'verify-health.ts' }[script!];
  expect(file, `printed command ${argv.join(' ')}`).toBeDefined();
  const r = await runOperatorScript(file!, args);
  expect(r.code, `${argv.join(' ')}\n${r.stdout}\n${r.stderr}`).toBe(0);
}

interface Case {
  readonly name: string;
  readonly breakIt: () => Promise<void>;
  /** Rows that must fail: rule id, what it was judged against, and what the detail must say. */
  readonly expect: readonly (readonly [id: string, against: string, detail: RegExp])[];
}

const SITE_TOKEN_PARAM = 'site_token';

const CASES: readonly Case[] = [
  { name: '/ws/ proxy_read_timeout below the heartbeat', breakIt: () => editRunningNginx(inLocation('/ws/', /proxy_read_timeout \d+s;/, 'proxy_read_timeout 10s;')), expect: [['ws-read-timeout', 'running', /proxy_read_timeout 10s is not above the 25 s heartbeat/], ['running-config-drift', 'running', /\+ http > server > location \/ws\/ > proxy_read_timeout 10s/]] },
  { name: 'worker_shutdown_timeout removed', breakIt: () => editRunningNginx((t) => t.replace(/^worker_shutdown_timeout .*;\n/m, '')), expect: [['worker-shutdown-timeout', 'running', /not set/], ['running-config-drift', 'running', /- worker_shutdown_timeout \d+s/]] },
  { name: 'Upgrade header not forwarded', breakIt: () => editRunningNginx(inLocation('/ws/', /proxy_set_header Upgrade \$http_upgrade;/, '')), expect: [['ws-upgrade-headers', 'running', /Upgrade \$http_upgrade missing/], ['ws-handshake', 'running', /HTTP \d{3}: the running nginx does not forward the WebSocket upgrade/]] },
  { name: '/ws/ proxied with HTTP/1.0', breakIt: () => editRunningNginx(inLocation('/ws/', /proxy_http_version 1\.1;/, 'proxy_http_version 1.0;')), expect: [['ws-upgrade-headers', 'running', /proxy_http_version is 1\.0/]] },
  { name: '/ws/ buffered', breakIt: () => editRunningNginx(inLocation('/ws/', /proxy_buffering off;/, 'proxy_buffering on;')), expect: [['ws-buffering-off', 'running', /proxy_buffering is on/]] },
  { name: '/api/debug/ exposed', breakIt: () => editRunningNginx((t) => t.replace(/location \^~ \/api\/debug\/ \{\s*return 404;\s*\}/, '')), expect: [['debug-blocked', 'running', /\/api\/debug\/websocket\/status.* reach an upstream/], ['debug-not-public', 'running', /got \d+ from an upstream/]] },
  { name: '/internal/ exposed', breakIt: () => editRunningNginx((t) => t.replace(/location \^~ \/internal\/ \{\s*return 404;\s*\}/, 'location /internal/ { proxy_pass http://replyx_ws_gateway; }')), expect: [['internal-blocked', 'running', /\/internal\/publish reach an upstream/]] },
  { name: '/metrics exposed', breakIt: () => editRunningNginx((t) => t.replace(/location = \/metrics \{\s*return 404;\s*\}/, 'location = /metrics { proxy_pass http://replyx_backend; }')), expect: [['metrics-blocked', 'running', /\/metrics reach an upstream/]] },
  { name: '/ws/ routed to the backend by hand', breakIt: () => editRunningNginx(inLocation('/ws/', /proxy_pass http:\/\/\S+;/, 'proxy_pass http://replyx_backend;')), expect: [['ws-route', 'running', /wsRoute=gateway expects port/], ['ws-handshake', 'running', /reached the backend, which refused it with 4102/]] },
  { name: '/api/ routed to the gateway', breakIt: () => editRunningNginx(inLocation('/api/', /proxy_pass http:\/\/\S+;/, 'proxy_pass http://replyx_ws_gateway;')), expect: [['api-route', 'running', /\/api\/ must reach the backend/]] },
  { name: 'access log format with the query string', breakIt: () => editRunningNginx((t) => t.replace('"uri":"$uri"', '"uri":"$request_uri"')), expect: [['ws-log-no-query', 'running', /logs \$request_uri/]] },
  { name: 'a stray upstream member for the gateway', breakIt: () => editRunningNginx((t) => t.replace(/(upstream replyx_ws_gateway \{[^}]*?)(\n\s*keepalive|\n\s*\})/, '$1\n        server 127.0.0.1:9;$2')), expect: [['ws-route', 'running', /127\.0\.0\.1:9/], ['running-config-drift', 'running', /\+ http > upstream replyx_ws_gateway > server 127\.0\.0\.1:9/]] },
  {
    name: 'nginx listening on another port',
    breakIt: async () => {
      const [other] = await freePorts(1);
      await editRunningNginx((t) => t.replace(/listen 127\.0\.0\.1:(\d+) default_server([^;]*);/, `listen 127.0.0.1:${other} default_server$2;`));
    },
    expect: [['services-running', 'running', /nginx \(pid \d+\) does not listen on its port/], ['running-config-drift', 'running', /listen 127\.0\.0\.1:\d+ default_server/]],
  },
  {
    name: 'nginx bound to every interface (the reload fails to bind)',
    breakIt: async () => {
      await editRunningNginx((t) => t.replace(/listen 127\.0\.0\.1:(\d+) default_server([^;]*);/, 'listen 0.0.0.0:$1 default_server$2;'), false);
      process.kill(await pidOf('nginx'), 'SIGHUP');
      await new Promise((r) => setTimeout(r, 300));
    },
    expect: [['running-config-drift', 'running', /without a reload.*\+ http > server > listen 0\.0\.0\.0:\d+ default_server/]],
  },
  { name: 'config edited without a reload', breakIt: () => editRunningNginx(inLocation('/ws/', /proxy_send_timeout \d+s;/, 'proxy_send_timeout 5s;'), false), expect: [['running-config-drift', 'running', /changed after nginx \(pid \d+\) loaded it, without a reload/]] },
  { name: 'gateway killed', breakIt: () => killHard('gateway'), expect: [['services-running', 'running', /^gateway is not running$/], ['ws-handshake', 'running', /gateway is not running|HTTP 502/]] },
  { name: 'redis killed', breakIt: () => killHard('redis'), expect: [['services-running', 'running', /^redis is not running$/], ['redis', 'running', /ECONNREFUSED/]] },
  { name: 'nginx killed', breakIt: () => killHard('nginx'), expect: [['services-running', 'running', /^nginx is not running( and nginx \(pid \d+\) holds its port)?$/], ['running-config-drift', 'running', /nginx is not running/]] },
  { name: "Redis's maxmemory changed live", breakIt: async () => void (await redisAdminCommand(stack.handle.plan.redisUrl, 'CONFIG', 'SET', 'maxmemory', '1000000')), expect: [['service-settings', 'running', /redis runs with maxmemory=1000000, stack file \d+/]] },
  {
    name: 'JWT secret rotated in secrets.json, services not restarted',
    breakIt: async () => {
      const secrets = JSON.parse(await readFile(secretsFile(stack.stateDir), 'utf8')) as Record<string, string>;
      await writeFile(secretsFile(stack.stateDir), JSON.stringify({ ...secrets, jwtSecret: `${secrets.jwtSecret!.slice(0, -8)}rotated1` }));
    },
    expect: [['service-settings', 'running', /backend runs with JWT_SECRET \(secret, differs\).*gateway runs with JWT_SECRET \(secret, differs\)/], ['ws-handshake', 'running', /4001|another JWT secret/]],
  },
  { name: 'stack file: backend.workers changed', breakIt: () => editStackFile((t) => t.replace(/(replyx:backend:[\s\S]*?workers: )\d+/, '$12')), expect: [['backend-workers', 'running', /backend runs 4 workers, stack file says 2/], ['service-settings', 'running', /backend runs with BACKEND_WORKERS=4, stack file 2/]] },
  { name: 'stack file: gateway.heartbeatMs changed', breakIt: () => editStackFile((t) => t.replace(/heartbeatMs: \d+/, 'heartbeatMs: 20000')), expect: [['service-settings', 'running', /heartbeat is 25000 ms, stack file 20000 ms/], ['config-checksum', 'running', /header says [0-9a-f]{16}, the topology is [0-9a-f]{16}/]] },
  { name: 'stack file: nginx.proxyReadTimeoutS changed', breakIt: () => editStackFile((t) => t.replace(/(replyx:nginx:\n)/, '$1    proxyReadTimeoutS: 90\n')), expect: [['running-config-drift', 'running', /- http > server > location \/ws\/ > proxy_read_timeout 90s.*\+ http > server > location \/ws\/ > proxy_read_timeout 120s/]] },
  {
    name: 'site token in the error log',
    breakIt: async () => {
      const token = 'st1_0f3c9a77d2b84e61a5c0';
      // What a stray debug level or a foreign config writes: the request line with its query string.
      await appendFile(stack.handle.plan.services.find((s) => s.name === 'nginx')!.logFiles.find((f) => f.endsWith('error.log'))!, `2026/01/01 00:00:00 [error] 1#1: *1 upstream timed out, request: "POST /api/site/dialogs/123/messages?${SITE_TOKEN_PARAM}=${token} HTTP/1.1"\n`);
    },
    expect: [['no-secrets-in-logs', 'running', /error\.log: 1 line \(first line \d+, a site_token= value\)/]],
  },
  {
    name: "the stack's debug token printed in the gateway log",
    breakIt: async () => appendFile(stack.handle.logFile('gateway'), `{"level":30,"msg":"debug endpoint called","token":"${JSON.parse(await readFile(secretsFile(stack.stateDir), 'utf8')).debugToken}"}\n`),
    expect: [['no-secrets-in-logs', 'running', /gateway[^:]*\.log: 1 line \(first line \d+, the stack's debugToken\)/]],
  },
];

beforeAll(async () => {
  stack = await startOperatorTestStack();
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  console.log(`check live cases (ms): ${JSON.stringify(timings)}`);
}, 60_000);

describe('npm run check against a running stack broken by hand', () => {
  it('passes on the fresh stack, every row saying what it judged', async () => {
    const report = await check();
    expect(describeRows(report)).toEqual([]);
    expect(new Set(report.results.map((r) => r.against))).toEqual(new Set(['stack-file', 'rendered', 'running']));
    // Every rule that reads the rendered nginx config also judged the running one.
    const rendered = report.results.filter((r) => r.against === 'rendered').map((r) => r.id);
    expect(report.results.filter((r) => r.against === 'running' && rendered.includes(r.id)).map((r) => r.id)).toEqual(rendered);
  }, 60_000);

  it(`has at least 20 distinct cases (${CASES.length})`, () => {
    expect(new Set(CASES.map((c) => c.name)).size).toBeGreaterThanOrEqual(20);
  });

  it.each(CASES.map((c) => [c.name, c] as const))('%s: fails naming it, the printed fix repairs it', async (_name, c) => {
    const t0 = Date.now();
    await c.breakIt();
    const broken = await check();
    expect(broken.ok, describeRows(broken).join('\n')).toBe(false);
    for (const [id, against, detail] of c.expect) {
      const row = broken.results.find((r) => r.id === id && r.against === against);
      expect(row?.status, `${id} (${against}) in:\n${describeRows(broken).join('\n')}`).toBe('fail');
      expect(row!.detail).toMatch(detail);
    }
    // No secret value in anything the check says.
    const secrets = Object.values(JSON.parse(await readFile(secretsFile(stack.stateDir), 'utf8')) as Record<string, string>);
    const said = JSON.stringify(broken);
    for (const s of secrets) expect(said.includes(s)).toBe(false);
    // Every printed fix of a failed row is a complete command for this stack; run each once, as printed.
    const commands = [...new Set(failing(broken).flatMap((r) => fixCommands(r.fix).map((argv) => argv.join(' '))))];
    expect(commands.length, describeRows(broken).join('\n')).toBeGreaterThan(0);
    for (const cmd of failing(broken).map((r) => r.fix)) expect(fixCommands(cmd).length, `fix without a command: ${cmd}`).toBeGreaterThan(0);
    for (const cmd of commands) {
      expect(cmd).toMatch(new RegExp(`--stack local --project-dir ${stack.projectDir} --state-dir ${stack.stateDir}`));
      await runPrinted(cmd.split(' '));
    }
    const repaired = await check();
    expect(describeRows(repaired), `after ${commands.join(' && ')}`).toEqual([]);
    timings[c.name] = Date.now() - t0;
  }, 90_000);

  it('apply on a stack whose gateway hangs: RPX_DEPLOY_NOT_APPLIED naming /ws/ and the restart that repairs it', async () => {
    const selector = ['--stack', 'local', '--project-dir', stack.projectDir, '--state-dir', stack.stateDir];
    await stopWatchdog(stack.stateDir);
    const pid = await pidOf('gateway');
    process.kill(pid, 'SIGSTOP');
    try {
      const err = await stackMain(['apply', ...selector]).then(
        () => undefined,
        (e: unknown) => e as { code?: string; message: string; fix: string },
      );
      expect(err?.code).toBe('RPX_DEPLOY_NOT_APPLIED');
      expect(err!.message).toMatch(/\/ws\/ is served by nobody, the stack file says gateway/);
      expect(err!.fix).toMatch(/npm run stack -- restart gateway/);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    expect(await stackMain(['apply', ...selector])).toBe(0);
    expect(describeRows(await check())).toEqual([]);
  }, 90_000);
});
