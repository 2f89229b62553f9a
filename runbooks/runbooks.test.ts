import { readdirSync, readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { DEFAULT_TOKEN_POLICY } from '../examples/backend/src/demo.js';
import { tokenProtocols } from '../gateway/src/auth/credentials.js';
import { signWidgetToken } from '../gateway/src/auth/tokens.js';
import { REPO_DIR } from '../infra/operate/stack.js';
import { waitUntil } from '../infra/targets/local/ports.js';
import { operatorEnv, startOperatorTestStack, type OperatorTestStack } from '../test/operator-stack.js';
import { fencedCommands, runbookFences } from './fences.js';

// Runbooks are executable documentation: every command in a ```bash local fence runs, in
// order, against a real local stack (free ports, temp dirs), so a stale command, path or flag
// fails CI. Static tests check each runbook's structure and the seed's log greps.

const DIR = path.dirname(fileURLToPath(import.meta.url));
const RUNBOOKS = ['deploy', 'rollback', 'ws-desync', 'ws-gateway-down', 'domain-4003', 'redis-outage', 'backend-errors', 'gateway-capacity', 'load-test', 'nginx-drift'] as const;
const SECTIONS = ['Symptoms', 'Alerts', 'Diagnosis', 'Decision', 'Action', 'Verification', 'Escalation'];

const text = (name: string) => readFileSync(path.join(DIR, `${name}.md`), 'utf8');

describe('runbooks (static)', () => {
  it('covers every required runbook and nothing unexpected', () => {
    const files = readdirSync(DIR).filter((f) => f.endsWith('.md') && f !== 'README.md').map((f) => f.replace(/\.md$/, ''));
    expect(files.sort()).toEqual([...RUNBOOKS].sort());
  });

  it('the index (README.md) links every runbook, by symptom and in its full list', () => {
    const index = readFileSync(path.join(DIR, 'README.md'), 'utf8');
    const bySymptom = index.slice(index.indexOf('## Which runbook'), index.indexOf('## Every runbook'));
    const all = index.slice(index.indexOf('## Every runbook'));
    for (const name of RUNBOOKS) {
      expect(bySymptom, `${name}.md under a symptom`).toContain(`](${name}.md)`);
      expect(all, `${name}.md in the full list`).toContain(`](${name}.md)`);
    }
  });

  it.each(RUNBOOKS)('%s has every section, local and docker commands', (name) => {
    const md = text(name);
    const headings = [...md.matchAll(/^## (.+)$/gm)].map((m) => m[1]!);
    for (const s of SECTIONS) expect(headings, `${name}: ## ${s}`).toContain(s);
    expect(fencedCommands(md, 'local').length, `${name}: bash local commands`).toBeGreaterThan(0);
    expect(fencedCommands(md, 'docker').length, `${name}: bash docker commands`).toBeGreaterThan(0);
    for (const cmd of fencedCommands(md, 'docker')) expect(cmd).not.toMatch(/REPLYX_STATE_DIR/);
  });

  it("carries the seed's greps for Docker and for the local stack", () => {
    const all = RUNBOOKS.map(text).join('\n');
    const local = RUNBOOKS.flatMap((n) => fencedCommands(text(n), 'local')).join('\n');
    const docker = RUNBOOKS.flatMap((n) => fencedCommands(text(n), 'docker')).join('\n');
    for (const grep of ['grep -E "\\[Site\\]|\\[Widget\\]|\\[Admin\\]"', 'grep "Broadcasting message"', 'grep "WEBSOCKET_4003_ERROR"']) {
      expect(local, grep).toContain(grep);
      expect(docker, grep).toContain(grep);
    }
    expect(docker).toContain('docker logs replyx-ws-gateway');
    expect(all).toContain('npm run rollback -- --undo');
  });

  it('extracts commands from marked fences only, joining continuations', () => {
    const md = '```bash local\n# comment\nnpm run check \\\n  --static-only\n\n```\n```bash docker\ndocker ps\n```\n```bash\nnpm start\n```\n';
    expect(fencedCommands(md, 'local')).toEqual(['npm run check    --static-only']);
    expect(fencedCommands(md, 'docker')).toEqual(['docker ps']);
  });

  it('knows each fence\'s section and Decision-branch tags', () => {
    const md = '# t\n```bash local\na\n```\n## Diagnosis\n```bash local\nb\n```\n## Action\n```bash local crash\nc\n```\n```bash local hung\nd\n```\n```bash local\ne\n```\n```bash docker crash\nf\n```\n';
    expect(runbookFences(md).map((f) => [f.section, f.kind, f.tags.join(',')])).toEqual([
      ['', 'local', ''],
      ['Diagnosis', 'local', ''],
      ['Action', 'local', 'crash'],
      ['Action', 'local', 'hung'],
      ['Action', 'local', ''],
      ['Action', 'docker', 'crash'],
    ]);
    expect(fencedCommands(md, { kind: 'local', section: 'Action', tag: 'crash' })).toEqual(['c', 'e']);
    expect(fencedCommands(md, { kind: 'local', section: 'Action', tag: 'crash', only: true })).toEqual(['c']);
    expect(fencedCommands(md, { kind: 'local', section: 'Diagnosis' })).toEqual(['b']);
    expect(fencedCommands(md, 'local')).toEqual(['a', 'b', 'c', 'd', 'e']);
  });
});

describe('runbooks (live: every `bash local` command against a running local stack)', () => {
  let stack: OperatorTestStack;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    // With Prometheus, so the runbooks' alert queries run against a real one.
    stack = await startOperatorTestStack((doc) => doc.setIn(['config', 'replyx:monitoring'], doc.createNode({ enabled: true, scrapeIntervalS: 1, evaluationIntervalS: 1 })));
    env = operatorEnv(stack);
  }, 240_000);

  afterAll(async () => {
    await stack?.stop();
  }, 120_000);

  // The runbook line is what an operator types into bash; run it the same way.
  const run = async (command: string) => {
    const r = await execa('bash', ['-c', command], { cwd: REPO_DIR, env, extendEnv: false, timeout: 120_000, maxBuffer: 8 * 1024 * 1024, reject: false, stdin: 'ignore' });
    return { code: r.exitCode ?? 1, out: r.stdout, err: r.stderr };
  };

  // Action fences change the stack (restart, rollback, apply): the incident drills in
  // test/drills/ run them against the fault they fix; here every other local command runs.
  it.each(RUNBOOKS)('%s: every local command outside ## Action runs', async (name) => {
    const commands = runbookFences(text(name)).filter((f) => f.kind === 'local' && f.section !== 'Action').flatMap((f) => f.commands);
    for (const command of commands) {
      const r = await run(command);
      const where = `${name}.md: ${command}\n${r.out.slice(-600)}\n${r.err.slice(-600)}`;
      expect(r.code, where).toBe(0);
      // A stale path or binary name shows up on stderr even when `|| true`/`| tail` hide the exit code.
      expect(r.err, where).not.toMatch(/No such file or directory|command not found|Unknown option|unknown option|RPX_USAGE/);
    }
  }, 900_000);

  it('`stack logs nginx` shows the access and error logs, as JSON access lines', async () => {
    const r = await run('npm run -s stack -- logs nginx -n 5');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain(`==> ${stack.stateDir}/nginx/logs/access.log <==`);
    expect(r.out).toContain(`==> ${stack.stateDir}/nginx/logs/error.log <==`);
    const access = r.out.split('\n').filter((l) => l.startsWith('{"time"'));
    expect(access.length).toBeGreaterThan(0);
    for (const line of access) expect(JSON.parse(line)).toMatchObject({ service: 'nginx' });
  }, 60_000);

  it('every log grep of the runbooks (local and Docker forms) matches real log lines of this stack', async () => {
    const h = stack.handle;
    // Make the lines the runbooks look for happen: a refused widget (4003), a slow consumer
    // (4101), and a publish that fails while Redis is away (backend error, nginx 5xx).
    await forbiddenWidget(h.ports.gateway, h.secrets.widgetTokenSecret);
    await refusedWidgetSession();
    await ignoredDomainEntry(h.plan.databaseUrl, h.ports.gateway, h.secrets.widgetTokenSecret);
    await slowConsumer(h.ports.gateway, h.secrets.publishKey, await adminTokenFor(h.secrets.jwtSecret));
    await postWhileRedisIsDown();
    await postWhilePostgresIsDown();
    await unroutedLegacyHandshake(h.ports.backend);
    const checked: string[] = [];
    for (const name of RUNBOOKS) {
      for (const kind of ['local', 'docker'] as const) {
        for (const command of fencedCommands(text(name), kind)) {
          const probe = grepProbe(command, kind);
          if (!probe) continue;
          const r = await run(probe);
          checked.push(probe);
          expect(r.out.trim(), `${name}.md (${kind}): ${command}\nran: ${probe}\n${r.err.slice(-400)}`).not.toBe('');
        }
      }
    }
    expect(checked.length).toBeGreaterThan(15);
  }, 240_000);

  /**
   * A widget whose session token names an origin its assistant no longer allows (as if the domain
   * was removed after the session was issued): the gateway closes it with 4003 and logs WEBSOCKET_4003_ERROR.
   */
  async function forbiddenWidget(port: number, widgetTokenSecret: string): Promise<void> {
    const stale = await signWidgetToken(widgetTokenSecret, { dialogId: 123, assistantId: 3, origin: 'https://evil.example.org' }, DEFAULT_TOKEN_POLICY);
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws/widget/dialogs/123`, tokenProtocols(stale.token));
    await new Promise<void>((resolve) => ws.on('close', () => resolve()).on('error', () => resolve()));
  }

  /** A /ws/ handshake that reaches the backend without nginx's backend-route mark (as a hand-routed /ws/ does): closed with 4102 and logged. */
  async function unroutedLegacyHandshake(port: number): Promise<void> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws/dialogs/123`);
    const code = await new Promise<number>((resolve) => ws.on('close', (c) => resolve(c)).on('error', () => resolve(0)));
    expect(code).toBe(4102);
  }

  /** A customer page whose origin its assistant does not allow: the backend refuses the widget session (403) and logs WEBSOCKET_4003_ERROR. */
  async function refusedWidgetSession(): Promise<void> {
    const res = await fetch(`${stack.handle.urls.public.replace('localhost', '127.0.0.1')}/api/widget/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ assistant_id: 3, parent_origin: 'https://shop.not-a-customer.example.org' }),
    });
    expect(res.status).toBe(403);
    await res.arrayBuffer();
  }

  /**
   * An assistant whose allowed domains hold a public-suffix wildcard (`*.com`): the gateway logs
   * once that the entry "is ignored". Handshakes repeat until the access cache has expired.
   */
  async function ignoredDomainEntry(databaseUrl: string, port: number, widgetTokenSecret: string): Promise<void> {
    const db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
    const logFile = stack.handle.logFile('gateway');
    try {
      await db.query("UPDATE assistants SET allowed_domains = array_append(allowed_domains, '*.com') WHERE id = 3");
      const deadline = Date.now() + 20_000;
      while (grepCount(logFile, 'is ignored') === 0 && Date.now() < deadline) {
        await forbiddenWidget(port, widgetTokenSecret);
        await new Promise((r) => setTimeout(r, 500));
      }
    } finally {
      await db.query("UPDATE assistants SET allowed_domains = array_remove(allowed_domains, '*.com') WHERE id = 3");
      await db.end();
    }
  }

  async function adminTokenFor(secret: string): Promise<string> {
    const { signAdminToken } = await import('../examples/backend/src/demo.js');
    return signAdminToken(secret, 1, 600);
  }

  /** A client that stops reading while big events arrive: the gateway closes it with 4101 and logs "slow consumer". */
  async function slowConsumer(port: number, publishKey: string, token: string): Promise<void> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws/dialogs/200?token=${token}`);
    await new Promise((resolve) => ws.once('message', resolve));
    (ws as unknown as { _socket: Socket })._socket.pause();
    const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
    const big = JSON.stringify({ dialog_id: 200, type: 'message:new', data: { text: 'x'.repeat(200 * 1024) } });
    for (let i = 0; i < 200; i += 1) {
      const res = await fetch(`http://127.0.0.1:${port}/internal/publish`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-publish-key': publishKey }, body: big });
      await res.arrayBuffer();
      if (grepCount(stack.handle.logFile('gateway'), 'slow consumer') > 0) break;
    }
    (ws as unknown as { _socket: Socket })._socket.resume();
    expect(await closed).toBe(4101);
  }

  /** A message posted through nginx for the demo site's dialog. */
  async function postSiteMessage(text: string): Promise<Response> {
    const [site] = stack.handle.tokens.siteTokens;
    return fetch(`${stack.handle.urls.public.replace('localhost', '127.0.0.1')}/api/site/dialogs/${site!.dialogId}/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${site!.token}` },
      body: JSON.stringify({ text }),
    });
  }

  /** Stops Redis, posts a message through nginx (stored in the outbox: 201, no event id yet), starts Redis again. */
  async function postWhileRedisIsDown(): Promise<void> {
    const redis = stack.handle.plan.services.find((s) => s.name === 'redis')!;
    const { stopService, startService } = await import('../infra/targets/local/supervisor.js');
    await stopService(redis);
    try {
      const res = await postSiteMessage('while redis is away');
      expect(res.status).toBe(201);
      expect(((await res.json()) as { event_id: string | null }).event_id).toBeNull();
    } finally {
      await startService(redis, { redisMaxmemoryMb: stack.handle.topology.redis.maxmemoryMb });
    }
  }

  /** Stops Postgres, posts a message through nginx (nothing stored: 503 through nginx, a backend error line), starts Postgres again. */
  async function postWhilePostgresIsDown(): Promise<void> {
    const postgres = stack.handle.plan.services.find((s) => s.name === 'postgres')!;
    const { stopService, startService } = await import('../infra/targets/local/supervisor.js');
    await stopService(postgres);
    try {
      const res = await postSiteMessage('while postgres is away');
      expect(res.status).toBe(503);
      await res.arrayBuffer();
    } finally {
      await startService(postgres, { postgresUser: stack.handle.topology.postgres.user, postgresDatabase: stack.handle.topology.postgres.database });
    }
    // The greps read a recovered stack: workers that lost their connections are replaced, metrics answer again.
    const metrics = `http://127.0.0.1:${stack.handle.ports.backend}/metrics`;
    const back = await waitUntil(async () => (await fetch(metrics).then((r) => r.arrayBuffer().then(() => r.status), () => 0)) === 200, 60_000, 250);
    expect(back, 'backend /metrics answers again after Postgres is back').toBe(true);
  }

  function grepCount(file: string, needle: string): number {
    return readFileSync(file, 'utf8').split('\n').filter((l) => l.includes(needle)).length;
  }

  /**
   * The part of a runbook command that greps a log, as a command for this stack: up to the last
   * grep of the pipeline (a `| tail` or `|| echo` after it would hide an empty result), Docker's
   * `docker logs` / `docker exec` rewritten to this stack's files and ports. Undefined for
   * commands that grep no log (or grep Prometheus' alerts, which the monitoring test covers).
   */
  function grepProbe(command: string, kind: 'local' | 'docker'): string | undefined {
    if (!/\bgrep\b/.test(command) || command.includes('/api/v1/alerts')) return undefined;
    const stages = command.split(/ \|\| /)[0]!.split(' | ');
    const lastGrep = stages.findLastIndex((s) => /^grep\b/.test(s.trim()));
    if (lastGrep < 0) return undefined;
    let probe = stages.slice(0, lastGrep + 1).join(' | ');
    if (kind === 'docker') {
      const p = stack.handle.ports;
      const state = stack.stateDir;
      const files: Record<string, string> = {
        'replyx-ws-gateway': `"${state}/logs/gateway.log"`,
        'replyx-backend': `"${state}/logs/backend.log"`,
        'replyx-nginx': `"${state}/nginx/logs/access.log" "${state}/nginx/logs/error.log"`,
        'replyx-redis': `"${state}/redis/redis.log"`,
      };
      probe = probe
        .replace(/docker logs (replyx-[a-z-]+)(?: --tail=\d+)?/g, (_, c: string) => `cat ${files[c] ?? `missing-${c}`}`)
        .replace(/docker exec replyx-redis redis-cli/g, `redis-cli -p ${p.redis}`)
        .replace(/http:\/\/localhost:8001/g, `http://127.0.0.1:${p.gateway}`);
      if (/docker /.test(probe)) return undefined;
    }
    return probe;
  }
});
