import { DRAIN_GRACE_MS } from '../../../examples/backend/src/worker.js';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { renderNginxConfig } from '../../render/nginx.js';
import { ALERT_RULES_FILE } from '../../render/prometheus.js';
import { validateTopology } from '../../topology/index.js';
import { demoTokens, formatDemoTokens, PUBLISH_RECIPE_TITLE, shellQuote } from './demo-tokens.js';
import { LOCAL_SERVICES, planLocalStack, startOrder, startWaves, withPorts } from './plan.js';
import { describeOwner, parseProcNetTcp, parseSsListeners, portOwner } from './port-owner.js';
import { forNginxStartedHere, planLocalStackForNginx, runningNginxOpenFileLimit } from './nginx-limit.js';
import { nginxOpenFileLimit } from './processes.js';
import { generateSecrets, loadOrCreateSecrets } from './secrets.js';
import { assertPortFree, pidMatches } from './supervisor.js';
import { freePorts } from './ports.js';

const secrets = { jwtSecret: 'j'.repeat(43), publishKey: 'p'.repeat(43), debugToken: 'd'.repeat(43), siteTokenSecret: 's'.repeat(43), widgetTokenSecret: 'w'.repeat(43), redisGatewayPassword: 'g'.repeat(43), redisPublisherPassword: 'u'.repeat(43), redisAdminPassword: 'a'.repeat(43), gatewayDatabasePassword: 'q'.repeat(43) };
const local = (input: Record<string, unknown> = {}) => validateTopology({ target: 'local', ...input }).topology;
const opts = { stateDir: '/tmp/state', repoDir: '/repo', secrets, nodePath: '/usr/bin/node' };

describe('planLocalStack', () => {
  it('plans the five services with the topology ports, in dependency order', () => {
    const plan = planLocalStack(local(), opts);
    expect(startOrder(plan.services).map((s) => s.name)).toEqual([...LOCAL_SERVICES]);
    expect(plan.ports).toEqual({ postgres: 5433, redis: 6380, backend: 8000, gateway: 8001, nginx: 8080 });
    expect(plan.urls.public).toBe('http://localhost:8080');
    expect(plan.services.find((s) => s.name === 'nginx')!.dependsOn).toEqual(['backend', 'gateway']);
    expect(startWaves(plan.services).map((w) => w.map((s) => s.name))).toEqual([['postgres', 'redis'], ['backend', 'gateway'], ['nginx']]);
    expect(plan.services.map((s) => s.displayName)).toEqual(['replyx-postgres', 'replyx-redis', 'replyx-backend', 'replyx-ws-gateway', 'replyx-nginx']);
  });

  it('passes the contract env to backend and gateway, as argv arrays', () => {
    const plan = planLocalStack(local({ backend: { workers: 2 }, gateway: { heartbeatMs: 10_000, drainWindowMs: 700 } }), opts);
    const backend = plan.services.find((s) => s.name === 'backend')!;
    const gateway = plan.services.find((s) => s.name === 'gateway')!;
    expect(backend.argv).toEqual(['/usr/bin/node', '--import', 'tsx', 'examples/backend/src/main.ts']);
    expect(backend.env).toMatchObject({ PORT: '8000', BACKEND_WORKERS: '2', UVICORN_WORKERS: '2', DATABASE_URL: 'postgres://replyx@127.0.0.1:5433/replyx', REDIS_URL: `redis://replyx-publisher:${secrets.redisPublisherPassword}@127.0.0.1:6380`, JWT_SECRET: secrets.jwtSecret, SITE_TOKEN_SECRET: secrets.siteTokenSecret, WIDGET_TOKEN_SECRET: secrets.widgetTokenSecret });
    expect(gateway.argv).toEqual(['/usr/bin/node', '--import', 'tsx', 'gateway/src/main.ts']);
    expect(gateway.env).toMatchObject({ PORT: '8001', HEARTBEAT_MS: '10000', DRAIN_WINDOW_MS: '700', PUBLISH_KEY: secrets.publishKey, DEBUG_TOKEN: secrets.debugToken, SITE_TOKEN_SECRET: secrets.siteTokenSecret, WIDGET_TOKEN_SECRET: secrets.widgetTokenSecret, BROKER: 'redis', SERVICE_MODE: 'websocket', UVICORN_WORKERS: '1' });
    expect(gateway.stopGraceMs).toBeGreaterThan(700);
    expect(backend.ready).toEqual({ kind: 'http', url: 'http://127.0.0.1:8000/health' });
    const nginx = plan.services.find((s) => s.name === 'nginx')!;
    expect(nginx.argv).toEqual(['nginx', '-p', '/tmp/state/nginx', '-c', '/tmp/state/nginx/nginx.conf', '-g', 'daemon off;']);
  });

  it('applies port overrides to the plan and to the topology nginx is rendered from', () => {
    const ports = { postgres: 41001, redis: 41002, backend: 41003, gateway: 41004, nginx: 41005 };
    const plan = planLocalStack(local(), { ...opts, ports });
    expect(plan.ports).toEqual(ports);
    expect(plan.topology.nginx.port).toBe(41005);
    expect(plan.topology.gateway.port).toBe(41004);
    expect(plan.services.find((s) => s.name === 'redis')!.argv).toContain('41002');
    expect(withPorts(local(), ports).backend.port).toBe(41003);
  });

  it('lists every log a service writes: nginx access and error logs before its stderr, Postgres JSON first', () => {
    const plan = planLocalStack(local(), opts);
    const logs = (name: string) => plan.services.find((s) => s.name === name)!.logFiles;
    expect(logs('nginx')).toEqual(['/tmp/state/nginx/logs/access.log', '/tmp/state/nginx/logs/error.log', '/tmp/state/nginx/logs/nginx.stderr.log']);
    expect(logs('postgres')).toEqual(['/tmp/state/postgres/log/postgresql.json', '/tmp/state/postgres/postgres.log']);
    expect(logs('gateway')).toEqual(['/tmp/state/logs/gateway.log']);
    // The files nginx is configured with are the ones listed.
    const config = renderNginxConfig(plan.topology, 'local', plan.nginxRender);
    expect(config).toContain('access_log "/tmp/state/nginx/logs/access.log" replyx_http;');
    expect(config).toContain('error_log "/tmp/state/nginx/logs/error.log" warn;');
  });

  it('renders worker_rlimit_nofile within the open-file limit nginx is started with, the same for every local render', () => {
    const capped = planLocalStack(local(), { ...opts, nginxOpenFileLimit: 20_000 });
    expect(renderNginxConfig(capped.topology, 'local', capped.nginxRender)).toContain('\nworker_rlimit_nofile 20000;\n');
    const unlimited = planLocalStack(local(), opts);
    expect(renderNginxConfig(unlimited.topology, 'local', unlimited.nginxRender)).toContain(`\nworker_rlimit_nofile ${2 * unlimited.topology.nginx.workerConnections};\n`);
    // What the local target reads is this process's hard limit, the one nginx inherits.
    const hard = execFileSync('bash', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim();
    expect(nginxOpenFileLimit()).toBe(hard === 'unlimited' ? undefined : Number(hard));
  });

  it('renders for this process its own limit when no nginx of the plan runs (nginx would be started from here), and for a restart here', async () => {
    const stateDir = await mkdtemp(path.join(os.tmpdir(), 'replyx-nofile-'));
    try {
      const options = { ...opts, stateDir };
      const plan = await planLocalStackForNginx(local(), options);
      expect(plan.nginxRender.openFileLimit).toBe(nginxOpenFileLimit());
      expect(await runningNginxOpenFileLimit(plan)).toBeUndefined();
      // A pid file naming a process that is not nginx (pid reuse) is no running master.
      const pidFile = plan.services.find((s) => s.name === 'nginx')!.pidFile;
      await mkdir(path.dirname(pidFile), { recursive: true });
      await writeFile(pidFile, String(process.pid));
      expect(await runningNginxOpenFileLimit(plan)).toBeUndefined();
      const other = planLocalStack(local(), { ...options, nginxOpenFileLimit: 1234 });
      expect(forNginxStartedHere(other).nginxRender).toEqual({ ...other.nginxRender, openFileLimit: nginxOpenFileLimit() });
    } finally {
      await rm(stateDir, { recursive: true, force: true });
    }
  });

  it('adds Prometheus only with monitoring: Debian binary, rendered config scraping backend and gateway, the alert rules, its URL', () => {
    expect(planLocalStack(local(), opts).services.map((s) => s.name)).not.toContain('prometheus');
    for (const plan of [planLocalStack(local({ monitoring: { enabled: true, prometheusPort: 9300 } }), opts), planLocalStack(local({ monitoring: { prometheusPort: 9300 } }), { ...opts, monitoring: true })]) {
      const prom = plan.services.find((s) => s.name === 'prometheus')!;
      expect(plan.ports.prometheus).toBe(9300);
      expect(plan.urls.prometheus).toBe('http://localhost:9300');
      expect(plan.topology.monitoring.enabled).toBe(true);
      expect(prom.argv).toEqual([
        'prometheus',
        '--config.file=/tmp/state/prometheus/prometheus.yml',
        '--storage.tsdb.path=/tmp/state/prometheus/data',
        '--storage.tsdb.retention.time=168h',
        '--web.listen-address=127.0.0.1:9300',
        '--log.format=json',
      ]);
      expect(prom.ready).toEqual({ kind: 'http', url: 'http://127.0.0.1:9300/-/ready' });
      expect(prom.dependsOn).toEqual(['backend', 'gateway']);
      const config = parse(prom.files![0]!.content) as { rule_files: string[]; scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[] };
      expect(prom.files![0]!.path).toBe('/tmp/state/prometheus/prometheus.yml');
      expect(config.rule_files).toEqual([ALERT_RULES_FILE]);
      expect(Object.fromEntries(config.scrape_configs.map((j) => [j.job_name, j.static_configs[0]!.targets]))).toEqual({
        'replyx-gateway': ['127.0.0.1:8001'],
        'replyx-backend': ['127.0.0.1:8000'],
        prometheus: ['127.0.0.1:9300'],
      });
    }
    // Prometheus on a port a service already uses is a topology error, like any clash.
    expect(() => local({ monitoring: { enabled: true, prometheusPort: 8080 } })).toThrow(expect.objectContaining({ details: ['monitoring.prometheusPort: port 8080 is used by nginx and prometheus (fix: give monitoring.prometheusPort a port of its own)'] }));
    expect(() => planLocalStack(local({ monitoring: { prometheusPort: 8080 } }), { ...opts, monitoring: true })).toThrow(expect.objectContaining({ details: [expect.stringMatching(/^monitoring\.prometheusPort: port 8080/)] }));
  });

  it('stops and restarts each service the way that fails nothing: fast Postgres shutdown, nginx handover, ready lines from node services', () => {
    const plan = planLocalStack(local(), opts);
    const by = (n: string) => plan.services.find((s) => s.name === n)!;
    expect(by('postgres').stopSignal).toBe('SIGINT');
    expect(by('nginx').handoverSignal).toBe('SIGQUIT');
    expect(by('nginx').stopSignal ?? 'SIGTERM').toBe('SIGTERM');
    expect(plan.services.filter((s) => s.readyLine).map((s) => s.name).sort()).toEqual(['backend', 'gateway']);
    // The backend's grace covers its drain (in-flight requests, then nginx's idle keepalive timeout).
    expect(by('backend').stopGraceMs).toBeGreaterThan(DRAIN_GRACE_MS + 3000);
  });

  it('skips Postgres when given a database', () => {
    const plan = planLocalStack(local(), { ...opts, externalDatabaseUrl: 'postgres://x@127.0.0.1:1/db' });
    expect(plan.services.map((s) => s.name)).not.toContain('postgres');
    expect(plan.services.find((s) => s.name === 'backend')!.env.DATABASE_URL).toBe('postgres://x@127.0.0.1:1/db');
  });

  it('plans N gateway replicas on consecutive ports, each with its own pid, log, instance id, all behind nginx', () => {
    const plan = planLocalStack(local({ gateway: { replicas: 3, port: 9101 } }), { ...opts, monitoring: true });
    const gateways = plan.services.filter((s) => s.name.startsWith('gateway'));
    expect(gateways.map((s) => [s.name, s.port, s.env.PORT, s.env.INSTANCE_ID])).toEqual([
      ['gateway-1', 9101, '9101', 'replyx-ws-gateway-1'],
      ['gateway-2', 9102, '9102', 'replyx-ws-gateway-2'],
      ['gateway-3', 9103, '9103', 'replyx-ws-gateway-3'],
    ]);
    expect(new Set(gateways.map((s) => s.pidFile)).size).toBe(3);
    expect(new Set(gateways.map((s) => s.logFile)).size).toBe(3);
    expect(plan.services.find((s) => s.name === 'nginx')!.dependsOn).toEqual(['backend', 'gateway-1', 'gateway-2', 'gateway-3']);
    const prometheus = plan.services.find((s) => s.name === 'prometheus')!.files![0]!.content;
    for (const port of [9101, 9102, 9103]) expect(prometheus).toContain(`127.0.0.1:${port}`);
    // One replica keeps the plain names every runbook uses.
    expect(planLocalStack(local(), opts).services.filter((s) => s.name.startsWith('gateway')).map((s) => s.name)).toEqual(['gateway']);
  });
});

describe('port owner', () => {
  it('hands out distinct free ports for a whole stack', async () => {
    const ports = await freePorts(20);
    expect(new Set(ports).size).toBe(20);
  });

  it('parses ss and /proc/net/tcp listeners', () => {
    const ss = 'LISTEN 0      511        127.0.0.1:8080      0.0.0.0:*    users:(("nginx",pid=4242,fd=6),("nginx",pid=4243,fd=6))\n';
    expect(parseSsListeners(ss, 8080)).toEqual({ command: 'nginx', pid: 4242 });
    expect(parseSsListeners(ss, 80)).toBeUndefined();
    const proc = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n';
    expect(parseProcNetTcp(proc, 8080)).toEqual(['12345']);
    expect(parseProcNetTcp(proc, 8081)).toEqual([]);
    expect(describeOwner(undefined)).toBe('an unknown process');
    expect(describeOwner({ command: 'redis-server', pid: 7 })).toBe('redis-server (pid 7)');
  });

  it('names this process when it holds the port a service wants', async () => {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    expect(portOwner(port)?.pid).toBe(process.pid);
    const spec = planLocalStack(local(), { ...opts, ports: { nginx: port } }).services.find((s) => s.name === 'nginx')!;
    await expect(assertPortFree(spec)).rejects.toMatchObject({ code: 'RPX_PORT_TAKEN', message: expect.stringContaining(`(pid ${process.pid})`) });
    server.close();
    expect(pidMatches(process.pid, 'node')).toBe(true);
    expect(pidMatches(process.pid, 'no-such-marker')).toBe(false);
  });
});

describe('secrets and tokens', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  it('creates secrets once with mode 600 and rejects a damaged file', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'replyx-secrets-'));
    dirs.push(dir);
    const first = await loadOrCreateSecrets(dir);
    expect(await loadOrCreateSecrets(dir)).toEqual(first);
    expect((await stat(path.join(dir, 'secrets.json'))).mode & 0o777).toBe(0o600);
    expect(first.jwtSecret).not.toBe(generateSecrets().jwtSecret);
    // A state directory from before site/widget keys existed gets them added, once.
    const { siteTokenSecret: _s, widgetTokenSecret: _w, ...older } = first;
    await writeFile(path.join(dir, 'secrets.json'), JSON.stringify(older));
    const completed = await loadOrCreateSecrets(dir);
    expect(completed).toMatchObject(older);
    expect(completed.siteTokenSecret).toHaveLength(43);
    expect(await loadOrCreateSecrets(dir)).toEqual(completed);
    await writeFile(path.join(dir, 'secrets.json'), '{"jwtSecret": 1}');
    await expect(loadOrCreateSecrets(dir)).rejects.toMatchObject({ code: 'RPX_LOCAL_SECRETS_INVALID' });
  });

  it('fills the seed’s commands in for the stack’s ports, and quotes them for a shell', async () => {
    const t = await demoTokens(secrets, { nginx: 18080, backend: 18000, gateway: 18001 });
    expect(t.siteTokens.map((s) => [s.name, s.dialogId, s.assistantId, s.jti])).toEqual([
      ['SITE1', 100, 3, 'demo-site1-token'],
      ['SITE2', 200, 4, 'demo-site2-token'],
      ['SITE3', 300, 5, 'demo-site3-token'],
    ]);
    expect(t.dialogs).toEqual([100, 123, 200, 300]);
    expect(t.widget).toMatchObject({ assistantId: 3, allowedOrigin: 'http://localhost:18080', dialogId: 123 });
    const text = formatDemoTokens(t);
    // Tokens go in the subprotocol (wscat -s), never in the URL.
    expect(text).toContain(`npx --yes wscat@6 -c ws://localhost:18080/ws/dialogs/123 -s replyx.v1 -s replyx.token.${t.adminToken}`);
    expect(text).toContain(`wscat@6 -c ws://localhost:18080/ws/widget/dialogs/123 -s replyx.v1 -s replyx.token.${t.widget.token}`);
    expect(text).not.toMatch(/\?(token|site_token|assistant_id)=/);
    expect(text).toContain(`'{"assistant_id":3,"parent_origin":"http://localhost:18080","visitor_key":"${t.widget.visitorKey}"}'`);
    expect(text).toContain('curl -s http://localhost:18000/health');
    expect(text).toContain(`-d '{"text": "Test message"}'`);
    expect(shellQuote("it's")).toBe(`'it'\\''s'`);
    // Same secrets, same visitor key and site token ids: derived or fixed, not stored.
    const again = await demoTokens(secrets, { nginx: 1, backend: 2, gateway: 3 });
    expect(again.widget.visitorKey).toBe(t.widget.visitorKey);
    expect(again.siteTokens.map((s) => s.jti)).toEqual(t.siteTokens.map((s) => s.jti));
  });
});

describe('scripts/stack.ts', () => {
  const cliIn = (env: Record<string, string>, ...args: string[]) =>
    execa(process.execPath, ['--import', 'tsx', 'scripts/stack.ts', ...args], { cwd: path.resolve(import.meta.dirname, '../../..'), stdin: 'ignore', env });
  const cli = (...args: string[]) => cliIn({}, ...args);

  it('prints help for every command', async () => {
    const outs = await Promise.all(['up', 'down', 'status', 'logs', 'restart', 'tokens', ''].map((cmd) => cli(...(cmd ? [cmd] : []), '--help')));
    for (const o of outs) expect(o.stdout).toContain('Usage:');
    expect(outs.at(-1)!.stdout).toContain('restart SVC');
    expect(outs[0]!.stdout).toContain('--monitoring');
  }, 90_000);

  it('tokens prints the publish key and the HTTP publish recipe filled in with this stack’s port and key', async () => {
    const stateDir = await mkdtemp(path.join(os.tmpdir(), 'replyx-tokens-'));
    try {
      const env = { REPLYX_STATE_DIR: stateDir };
      const json = JSON.parse((await cliIn(env, 'tokens', '--json')).stdout) as { publishKey: string; commands: { title: string; argv: string[] }[] };
      const key = (await loadOrCreateSecrets(stateDir)).publishKey;
      expect(json.publishKey).toBe(key);
      const recipe = json.commands.find((c) => c.title === PUBLISH_RECIPE_TITLE)!;
      expect(recipe.argv.slice(0, 5)).toEqual(['curl', '-s', '-X', 'POST', 'http://127.0.0.1:8001/internal/publish']);
      expect(recipe.argv).toContain(`X-Publish-Key: ${key}`);
      expect(JSON.parse(recipe.argv.at(-1)!)).toMatchObject({ dialog_id: 123, type: 'message:new' });
      const text = (await cliIn(env, 'tokens')).stdout;
      expect(text).toContain(`Publish key (X-Publish-Key of POST /internal/publish on the gateway port): ${key}`);
      expect(text).toContain(`curl -s -X POST http://127.0.0.1:8001/internal/publish -H 'X-Publish-Key: ${key}' -H 'content-type: application/json' -d '{"dialog_id":123,`);
    } finally {
      await rm(stateDir, { recursive: true, force: true });
    }
  }, 90_000);

  it('rejects bad input with one RPX_USAGE line', async () => {
    const cases = [['status', '--bogus'], ['frobnicate'], ['logs'], ['logs', 'mysql'], ['restart', 'backend', 'extra'], ['tokens', '--stack', '../etc']];
    const errs = await Promise.all(cases.map((args) => cli(...args).then(() => undefined, (e: unknown) => e as { exitCode: number; stderr: string })));
    for (const err of errs) {
      expect(err?.exitCode).toBe(1);
      expect(err!.stderr.trim().split('\n')).toHaveLength(1);
      expect(err!.stderr).toContain('RPX_USAGE');
    }
  }, 90_000);
});

