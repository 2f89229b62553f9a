import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdirSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { DEMO_WIDGET_ASSISTANT_ID } from '../../examples/backend/src/demo.js';
import { tokenProtocols } from '../../gateway/src/auth/credentials.js';
import { REPO_DIR } from '../../infra/operate/stack.js';
import { reloadAndWait } from '../../infra/targets/local/nginx-workers.js';
import { waitUntil } from '../../infra/targets/local/ports.js';
import { readPid } from '../../infra/targets/local/supervisor.js';
import { CloseCodes } from '../../gateway/src/close-codes.js';
import { expectNothingLost, startDrill, type Drill } from './drill.js';

// Routing incident drills (issue 16): a customer's widget refused for its domain (4003), `/ws/`
// hand-routed to the backend (nginx.conf edited and reloaded by hand; the backend refuses those
// clients with 4102, so they back off and resume afterwards), and nginx config drift.
// One live stack with traffic; each fault is injected behind the on-call side's back, who
// follows runbooks/domain-4003.md, ws-desync.md and nginx-drift.md literally.

const RUNBOOKS = ['domain-4003', 'ws-desync', 'nginx-drift'] as const;

/** The close code the backend refuses a /ws/ handshake with when the stack plan does not route /ws/ to it. */
const NOT_ROUTED = CloseCodes.NOT_ROUTED.code;

/** The check table's rows of one rule (a rule judged against several configs has several). */
function checkRows(text: string, rule: string): string[] {
  return text.split('\n').filter((l) => l.trimStart().startsWith(`${rule} `));
}

/** What a customer's page does: a widget session through nginx for its origin, then the socket's first frame. */
async function customerWidget(nginx: string, assistant: number, origin: string): Promise<{ status: number; firstFrame?: Record<string, unknown> }> {
  const res = await fetch(`${nginx}/api/widget/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ assistant_id: assistant, parent_origin: origin }) });
  const body = (await res.json()) as { token?: string; dialog_id?: number };
  if (res.status !== 201) return { status: res.status };
  const ws = new WebSocket(`${nginx.replace('http', 'ws')}/ws/widget/dialogs/${body.dialog_id!}`, tokenProtocols(body.token!), { headers: { origin } });
  const firstFrame = await new Promise<Record<string, unknown>>((resolve, reject) => {
    ws.once('message', (data) => resolve(JSON.parse(String(data)) as Record<string, unknown>));
    ws.once('close', (code) => reject(new Error(`widget closed ${code}`)));
    ws.once('error', reject);
  }).finally(() => ws.terminate());
  return { status: res.status, firstFrame };
}

/** Keeps the pasted output of each drill for reading after a run. */
function keep(name: string, text: string): void {
  const dir = path.join(REPO_DIR, 'test-results');
  mkdirSync(dir, { recursive: true });
  appendFileSync(path.join(dir, 'drills-routing.txt'), `\n===== ${name}\n${text}\n`);
}

describe('routing drills (live local stack under traffic)', () => {
  let drill: Drill;
  let nginx: string;
  let confFile: string;

  /** Edits the running nginx.conf as a person would with an editor, then reloads nginx (SIGHUP). */
  async function handEditAndReload(edit: (conf: string) => string): Promise<void> {
    const before = await readFile(confFile, 'utf8');
    const after = edit(before);
    expect(after, 'the hand edit changes the file').not.toBe(before);
    await writeFile(confFile, after);
    const pid = await readPid(drill.run.stack.handle.plan.services.find((s) => s.name === 'nginx')!.pidFile);
    expect(pid, 'nginx pid').toBeDefined();
    expect((await reloadAndWait(pid!)).reloaded, 'nginx reloaded the hand edit').toBe(true);
  }

  beforeAll(async () => {
    drill = await startDrill();
    const h = drill.run.stack.handle;
    nginx = `http://127.0.0.1:${h.ports.nginx}`;
    confFile = h.plan.nginxConfigFile;
  }, 300_000);

  afterAll(async () => {
    await drill?.stop();
  }, 120_000);

  it('4003: a customer domain refused is allowed from the log line and proven with that origin', async () => {
    // Not under the assistant's `*.example.com`: a literal `shop.example.com` fix would change nothing here.
    const origin = `https://shop-${randomBytes(3).toString('hex')}.customer-example.test`;
    const assistant = DEMO_WIDGET_ASSISTANT_ID;
    const result = await drill.incident('4003: customer domain refused', async () => {
      expect((await customerWidget(nginx, assistant, origin)).status, 'the customer widget is refused').toBe(403);

      const diagnosis = await drill.follow('domain-4003', 'Diagnosis');
      keep('domain-4003 Diagnosis', diagnosis.text);
      expect(diagnosis.text).toContain(`assistant ${assistant} refused ${origin}`);
      expect(diagnosis.text, 'the stack itself is healthy').toContain('check passed');

      // The Verification can fail: before the Action it refuses the customer's origin.
      const before = await drill.follow('domain-4003', 'Verification', { allowFailure: true });
      keep('domain-4003 Verification before the Action', before.text);
      expect(before.steps[0]!.code, 'Verification fails while the origin is refused').not.toBe(0);
      expect(before.text).toMatch(new RegExp(`widget origin ${origin.replace(/\./g, '\\.')} \\(assistant ${assistant}\\)\\s+FAIL.*403`));

      const action = await drill.follow('domain-4003', 'Action', { tag: 'not-listed' });
      keep('domain-4003 Action', action.text);
      expect(action.text).toContain('UPDATE 1');
      expect(action.text).toContain(new URL(origin).hostname);

      const verified = await drill.follow('domain-4003', 'Verification');
      keep('domain-4003 Verification', verified.text);
      expect(verified.text).toMatch(new RegExp(`widget origin ${origin.replace(/\./g, '\\.')} \\(assistant ${assistant}\\)\\s+OK`));
      const page = await customerWidget(nginx, assistant, origin);
      expect(page.status, "the customer's widget gets a session").toBe(201);
      expect(page.firstFrame).toMatchObject({ type: 'connected', server: 'ws-gateway' });
    });
    expectNothingLost(result);
  }, 400_000);

  it('/ws/ hand-routed to the backend: the backend refuses its clients (4102), the check sees it, apply restores the rendered config, nothing is lost', async () => {
    const stackFile = await readFile(drill.run.stack.stackFile, 'utf8');
    const backendMetrics = `http://127.0.0.1:${drill.run.stack.handle.ports.backend}/metrics`;
    const metricSum = async (name: string) => {
      const text = await fetch(backendMetrics).then((r) => r.text(), () => '');
      return [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+)`, 'gm'))].reduce((n, m) => n + Number(m[1]), 0);
    };
    const clients = drill.run.clients;
    const closesBefore = clients.map((c) => c.closes.length);
    const refusedBefore = await metricSum('replyx_backend_ws_not_routed_handshakes_total');
    const refusedClients = () => clients.filter((c, i) => c.closes.slice(closesBefore[i]).includes(NOT_ROUTED)).length;
    let maxOnBackend = 0;
    const at: Record<string, number> = {};
    const result = await drill.incident('/ws/ hand-routed to the backend', async () => {
      await handEditAndReload((conf) => conf.replace(/(location \/ws\/ \{[^}]*?proxy_pass http:\/\/)replyx_ws_gateway;/, '$1replyx_backend;'));
      // The incident as users live it: clients reach the backend once nginx's old workers end
      // their sockets (worker_shutdown_timeout), before anyone notices; the backend refuses them.
      at.edited = Date.now();
      await waitUntil(
        async () => {
          maxOnBackend = Math.max(maxOnBackend, await metricSum('replyx_backend_ws_connections'));
          return refusedClients() === clients.length;
        },
        90_000,
        250,
      );
      at.refused = Date.now();

      const diagnosis = await drill.follow('ws-desync', 'Diagnosis');
      keep('ws-desync Diagnosis', diagnosis.text);
      const handshake = checkRows(diagnosis.text, 'ws-handshake').join('\n');
      expect(handshake).toContain('FAIL');
      expect(handshake).toContain(`refused it with ${NOT_ROUTED}`);
      const drift = checkRows(diagnosis.text, 'running-config-drift').join('\n');
      expect(drift).toContain('FAIL');
      expect(drift).toContain('replyx_backend');
      expect(diagnosis.text).toMatch(/^replyx_backend_ws_not_routed_handshakes_total [1-9]/m);
      expect(diagnosis.text).toMatch(/^replyx_backend_ws_connections\{type="admin"\} 0$/m);
      expect(diagnosis.text, 'the backend log names the refusal and the fix').toMatch(/legacy \/ws\/ handshake refused with 4102 \(\d+ since the last such line\).*npm run check, then npm run stack -- apply/);

      const action = await drill.follow('ws-desync', 'Action', { tag: 'hand-routed' });
      keep('ws-desync Action', action.text);
      expect(action.text).toMatch(/new workers serving/);
      expect(action.text).toMatch(/\/ws\/ served by the gateway/);
      at.applied = Date.now();

      const verified = await drill.follow('ws-desync', 'Verification');
      keep('ws-desync Verification', verified.text);
      expect(verified.text).toContain('check passed');
      expect(verified.text).toMatch(/via ws-gateway/);
    });
    // Back on the gateway: the window waited for every client (backoff included) and every message.
    const refused = (await metricSum('replyx_backend_ws_not_routed_handshakes_total')) - refusedBefore;
    // When the last client was open again after apply (its backoff decides).
    const lastBack = Math.max(...clients.map((c) => c.outages.at(-1)?.openedAt ?? 0));
    keep(
      'ws-desync score',
      `every client refused (4102) ${at.refused! - at.edited!} ms after the edit; the runbook took ${at.applied! - at.refused!} ms from there to apply; the last client back ${lastBack - at.applied!} ms after apply; ${refused} handshakes refused in all; at most ${maxOnBackend} sockets on the backend; ${JSON.stringify({ ...result, examples: undefined })}`,
    );
    expect(refused, 'the backend counted the refusals').toBeGreaterThanOrEqual(clients.length);
    expect(maxOnBackend, 'no client was ever served by the backend').toBe(0);
    expect(await readFile(drill.run.stack.stackFile, 'utf8'), 'the stack file is unchanged (no workers: 1 left behind)').toBe(stackFile);
    expectNothingLost(result);
  }, 600_000);

  it('nginx config drift: the check names the directive, apply restores the rendered config', async () => {
    const result = await drill.incident('nginx config drift', async () => {
      await handEditAndReload((conf) => conf.replace(/(location \/ws\/ \{[^}]*?proxy_read_timeout )\d+s;/, '$1900s;'));

      const diagnosis = await drill.follow('nginx-drift', 'Diagnosis');
      keep('nginx-drift Diagnosis', diagnosis.text);
      const drift = checkRows(diagnosis.text, 'running-config-drift').join('\n');
      expect(drift).toContain('FAIL');
      expect(drift).toContain('proxy_read_timeout 900s');

      const action = await drill.follow('nginx-drift', 'Action', { tag: 'drift' });
      keep('nginx-drift Action', action.text);
      expect(action.text).toContain('nginx reloaded');

      const verified = await drill.follow('nginx-drift', 'Verification');
      keep('nginx-drift Verification', verified.text);
      expect(checkRows(verified.text, 'running-config-drift').join('\n')).toContain('PASS');
      expect(verified.text).toContain('check passed');
    });
    expectNothingLost(result);
  }, 400_000);

  it('every Action of the routing runbooks was proven by a drill', () => {
    for (const name of RUNBOOKS) expect(drill.unfollowedActions(name), name).toEqual([]);
  });
});
