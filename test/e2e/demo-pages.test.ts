import { access, mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { chromium, type Browser, type BrowserContext, type Frame, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UPGRADE_REQUIRED_HINT } from '../../gateway/src/access/endpoints.js';
import { PUBLISH_RECIPE_TITLE } from '../../infra/targets/local/demo-tokens.js';
import { REPO_DIR } from '../../infra/operate/stack.js';
import { waitUntil } from '../../infra/targets/local/ports.js';
import { stopService } from '../../infra/targets/local/supervisor.js';
import { runOperatorScript } from '../live-clients.js';
import { startOperatorTestStack, type OperatorTestStack } from '../operator-stack.js';

// The demo pages (examples/web, served by the local stack's nginx under /demo/) in headless
// Chromium, through nginx, against the real stack: an operator page (admin client) and a customer
// site whose widget runs in an iframe with a widget session for the page's origin. Messages are
// posted through the API, also while the gateway restarts and while /ws/ is rolled back to the
// backend and back; each page must then show exactly the dialog's messages as the API lists them,
// each delivered at most once. A site outside the allowed domains gets "domain not allowed" and
// no retry. Finally no stack log holds a token. Screenshots go to test-results/demo-pages/.

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SHOTS = path.join(REPO_DIR, 'test-results', 'demo-pages');
/** A host the browser resolves to the stack's nginx but that no assistant allows. */
const FOREIGN_HOST = 'shop.notallowed.test';
const JWT = /eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{8,}/;

let stack: OperatorTestStack;
let browser: Browser;
let context: BrowserContext;
let operator: Page;
let site: Page;
let widget: Frame;
let base: string;
let dialogId: number;
const posted: string[] = [];

interface Row {
  readonly id: number;
  readonly text: string;
  readonly deliveries: number;
}

/** What a page's `#messages` shows. */
async function shown(where: Page | Frame): Promise<Row[]> {
  return where.$$eval('#messages li', (lis) =>
    lis.map((li) => ({ id: Number(li.getAttribute('data-message-id')), text: (li.textContent ?? '').replace(/^[^:]*: /, ''), deliveries: Number(li.getAttribute('data-deliveries')) })),
  );
}

async function apiMessages(): Promise<{ id: number; text: string }[]> {
  const res = await fetch(`${base}/api/dialogs/${dialogId}/messages?limit=500`, { headers: { authorization: `Bearer ${stack.handle.tokens.adminToken}` } });
  expect({ status: res.status, body: res.status === 200 ? '' : await res.text() }).toEqual({ status: 200, body: '' });
  return ((await res.json()) as { messages: { id: number; text: string }[] }).messages.map((m) => ({ id: m.id, text: m.text }));
}

/** Posts one operator message through the API; true when stored (201). */
async function post(text: string): Promise<boolean> {
  const res = await fetch(`${base}/api/dialogs/${dialogId}/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${stack.handle.tokens.adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ text }),
  }).catch(() => undefined);
  if (res?.status === 201) posted.push(text);
  return res?.status === 201;
}

/** Posts a message every `everyMs` until the returned stop() is awaited. */
function publisher(label: string, everyMs = 150): () => Promise<number> {
  let running = true;
  let n = 0;
  const loop = (async () => {
    while (running) {
      if (await post(`${label} ${n}`)) n += 1;
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return async () => {
    running = false;
    await loop;
    return n;
  };
}

async function stateOf(where: Page | Frame): Promise<{ state?: string; server?: string }> {
  return where.$eval('#state', (el) => ({ state: el.getAttribute('data-state') ?? undefined, server: el.getAttribute('data-server') ?? undefined }));
}

/** Waits until both pages are connected to `server`; on timeout, what each page shows instead. */
async function bothOpenOn(server: string, timeoutMs = 30_000): Promise<unknown> {
  const ok = await waitUntil(async () => (await stateOf(operator)).server === server && (await stateOf(widget)).server === server, timeoutMs, 100);
  if (ok) return true;
  const text = (where: Page | Frame) => where.textContent('#state').catch((err: Error) => err.message);
  return `not both on ${server}: operator "${await text(operator)}", widget "${await text(widget)}"`;
}

/** How a page's list departs from the API's: ids missing, ids extra, out of order, delivered twice. */
function departures(rows: readonly Row[], want: readonly { id: number; text: string }[]) {
  const shownIds = new Set(rows.map((r) => r.id));
  const wantIds = new Set(want.map((m) => m.id));
  return {
    missing: want.filter((m) => !shownIds.has(m.id)).map((m) => `${m.id} ${m.text}`),
    extra: rows.filter((r) => !wantIds.has(r.id)).map((r) => `${r.id} ${r.text}`),
    outOfOrder: rows.some((r, i) => i > 0 && rows[i - 1]!.id >= r.id),
    doubled: rows.filter((r) => r.deliveries > 1).map((r) => `${r.id} ${r.text} x${r.deliveries}`),
  };
}

const CLEAN = { missing: [], extra: [], outOfOrder: false, doubled: [] };

/** Both pages show exactly the API's messages, in order, none delivered twice (`soft`: record a failure and go on). */
async function expectScreensMatchApi(label: string, soft = false): Promise<void> {
  const want = await apiMessages();
  const clean = async (where: Page | Frame) => JSON.stringify(departures(await shown(where), want)) === JSON.stringify(CLEAN);
  await waitUntil(async () => (await clean(operator)) && (await clean(widget)), 15_000, 100);
  await operator.screenshot({ path: path.join(SHOTS, `${label}-operator.png`) });
  await site.screenshot({ path: path.join(SHOTS, `${label}-site.png`) });
  const seen = { operator: departures(await shown(operator), want), widget: departures(await shown(widget), want) };
  console.log(`[demo-pages] ${label}: ${want.length} messages in the dialog; operator ${JSON.stringify(seen.operator) === JSON.stringify(CLEAN) ? 'exact' : 'differs'}, widget ${JSON.stringify(seen.widget) === JSON.stringify(CLEAN) ? 'exact' : 'differs'}`);
  (soft ? expect.soft : expect)({ label, messages: want.length, ...seen }).toEqual({ label, messages: want.length, operator: CLEAN, widget: CLEAN });
}

beforeAll(async () => {
  await access(CHROMIUM).catch(() => {
    throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  });
  await mkdir(SHOTS, { recursive: true });
  stack = await startOperatorTestStack((doc) => {
    doc.setIn(['config', 'replyx:gateway', 'drainWindowMs'], 1000);
  });
  base = `http://localhost:${stack.handle.ports.nginx}`;
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: [`--host-resolver-rules=MAP ${FOREIGN_HOST} 127.0.0.1`] });
  context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
}, 240_000);

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
}, 120_000);

describe('newcomer answers through nginx', () => {
  it('a plain GET on a WebSocket path answers 426 with the hint (gateway route)', async () => {
    const res = await fetch(`${base}/ws/dialogs/123`);
    expect({ status: res.status, upgrade: res.headers.get('upgrade'), body: await res.text() }).toEqual({ status: 426, upgrade: 'websocket', body: `${UPGRADE_REQUIRED_HINT}\n` });
  });

  it('the publish recipe of `stack tokens` stores and publishes an event on this stack', async () => {
    const env = { REPLYX_PROJECT_DIR: stack.projectDir, REPLYX_STATE_DIR: stack.stateDir };
    const out = await execa(process.execPath, ['--import', 'tsx', 'scripts/stack.ts', 'tokens', '--stack', 'local', '--json'], { cwd: REPO_DIR, env, stdin: 'ignore' });
    const tokens = JSON.parse(out.stdout) as { publishKey: string; commands: { title: string; argv: string[] }[] };
    expect(tokens.publishKey).toBe(stack.handle.secrets.publishKey);
    const [cmd, ...args] = tokens.commands.find((c) => c.title === PUBLISH_RECIPE_TITLE)!.argv;
    const curl = await execa(cmd!, [...args, '-w', '\n%{http_code}'], { stdin: 'ignore' });
    const [body, status] = curl.stdout.split('\n');
    expect(status).toBe('202');
    expect(JSON.parse(body!)).toMatchObject({ id: expect.stringMatching(/^\d+-\d+$/) });
  }, 60_000);
});

describe('demo pages in Chromium', () => {
  it('the customer site embeds the widget (a session for the page origin); the operator page opens its dialog; a message through the API shows on both', async () => {
    site = await context.newPage();
    const sessions: string[] = [];
    site.on('request', (r) => {
      if (r.url().endsWith('/api/widget/sessions')) sessions.push(r.postData() ?? '');
    });
    await site.goto(`${base}/demo/site.html`);
    const frame = await (await site.waitForSelector('#replyx-widget')).contentFrame();
    widget = frame!;
    await widget.waitForSelector('#state[data-state="open"]', { timeout: 20_000 });
    dialogId = Number(await widget.textContent('#dialog'));
    expect(dialogId).toBeGreaterThan(0);
    expect(JSON.parse(sessions[0]!)).toMatchObject({ assistant_id: 3, parent_origin: base });

    operator = await context.newPage();
    await operator.goto(`${base}/demo/operator.html`);
    await operator.fill('#dialog', String(dialogId));
    await operator.fill('#token', stack.handle.tokens.adminToken);
    await operator.click('#connect');
    expect(await bothOpenOn('ws-gateway')).toEqual(true);

    expect(await post('hello from the API')).toBe(true);
    await widget.waitForSelector('#messages li:has-text("hello from the API")', { timeout: 5000 });
    await operator.waitForSelector('#messages li:has-text("hello from the API")', { timeout: 5000 });
    // And typed in the widget: it goes through the API with the widget session, and reaches the operator.
    await widget.fill('#text', 'typed in the widget');
    await widget.press('#text', 'Enter');
    await operator.waitForSelector('#messages li:has-text("typed in the widget")', { timeout: 5000 });
    await expectScreensMatchApi('1-first-message');
  }, 90_000);

  it('both pages survive a gateway restart with messages flowing: nothing missing, nothing doubled', async () => {
    const stop = publisher('during gateway restart');
    await new Promise((r) => setTimeout(r, 500));
    await stack.handle.restart('gateway');
    await new Promise((r) => setTimeout(r, 1000));
    const n = await stop();
    expect(n).toBeGreaterThan(5);
    expect(await bothOpenOn('ws-gateway')).toEqual(true);
    await expectScreensMatchApi('2-gateway-restart');
  }, 120_000);

  it('both pages survive a rollback of /ws/ to the backend and its undo, with messages flowing: nothing missing, nothing doubled', async () => {
    const rollback = async (args: string[]) => {
      const run = await runOperatorScript('rollback.ts', [...args, ...stack.flags, '--json'], 180_000);
      expect(run.code, run.stderr).toBe(0);
      return JSON.parse(run.stdout) as { to: { wsRoute: string; backendWorkers: number } };
    };
    let stop = publisher('during rollback');
    // The seed's whole rollback plan at once: /ws/ to the backend, and one worker so its in-memory hub sees every event.
    expect((await rollback(['--ws-to', 'backend', '--backend-workers', '1'])).to).toEqual({ wsRoute: 'backend', backendWorkers: 1 });
    expect.soft(await bothOpenOn('backend')).toEqual(true);
    await new Promise((r) => setTimeout(r, 1000));
    await stop();
    // The backend answers a plain GET on /ws/ like the gateway (and nginx's keep-alive connection to it stays usable).
    const plain = await fetch(`${base}/ws/widget/dialogs/${dialogId}`);
    expect.soft({ status: plain.status, body: await plain.text() }).toEqual({ status: 426, body: `${UPGRADE_REQUIRED_HINT}\n` });
    // Soft: whatever the backend's mode showed, the undo below must still run and be judged.
    await expectScreensMatchApi('3-on-backend', true);

    stop = publisher('during undo');
    expect((await rollback(['--undo'])).to).toEqual({ wsRoute: 'gateway', backendWorkers: 4 });
    expect(await bothOpenOn('ws-gateway')).toEqual(true);
    await new Promise((r) => setTimeout(r, 1000));
    await stop();
    await expectScreensMatchApi('4-after-undo');
  }, 300_000);

  it('a widget embedded on a site that is not allowed shows "domain not allowed" and stops', async () => {
    const foreign = await context.newPage();
    const sessions: number[] = [];
    const sockets: string[] = [];
    foreign.on('response', (r) => {
      if (r.url().endsWith('/api/widget/sessions')) sessions.push(r.status());
    });
    foreign.on('websocket', (ws) => sockets.push(ws.url()));
    const foreignOrigin = `http://${FOREIGN_HOST}:${stack.handle.ports.nginx}`;
    await foreign.goto(`${foreignOrigin}/demo/site.html?chat=${encodeURIComponent(base)}`);
    const frame = (await (await foreign.waitForSelector('#replyx-widget')).contentFrame())!;
    await frame.waitForSelector('#banner:not([hidden])', { timeout: 15_000 });
    expect(await frame.textContent('#banner')).toBe('domain not allowed');
    // Well past the first backoff ceilings: nothing retried.
    await new Promise((r) => setTimeout(r, 4000));
    expect({ sessions, sockets }).toEqual({ sessions: [403], sockets: [] });
    await foreign.screenshot({ path: path.join(SHOTS, '5-domain-not-allowed.png') });
    const gatewayLog = await readFile(stack.handle.logFile('gateway'), 'utf8');
    expect(gatewayLog).not.toContain(FOREIGN_HOST);
    await foreign.close();
  }, 60_000);

  it('no token appears in any stack log, after the backend was down while the pages used the API', async () => {
    const backend = stack.handle.plan.services.find((s) => s.name === 'backend')!;
    await stopService(backend);
    // Upstream errors: the pages reload (history and widget session fail with 502) and post.
    await operator.reload();
    await operator.click('#connect');
    await site.reload();
    expect(await post('while the backend is down')).toBe(false);
    await new Promise((r) => setTimeout(r, 2000));
    await stack.handle.restart('backend');
    await operator.click('#connect');
    const frame = (await (await site.waitForSelector('#replyx-widget')).contentFrame())!;
    widget = frame;
    // The widget retried its session with backoff (full jitter, ceilings 1, 2, 4, 8 … s) while the backend was down.
    expect(await bothOpenOn('ws-gateway', 60_000)).toEqual(true);
    expect(await post('after the backend is back')).toBe(true);
    await expectScreensMatchApi('6-after-backend-outage');

    const secrets = [stack.handle.tokens.adminToken, stack.handle.secrets.publishKey, ...stack.handle.tokens.siteTokens.map((s) => s.token)];
    const files = ['nginx', 'gateway', 'backend'].flatMap((svc) => stack.handle.logFiles(svc as 'nginx'));
    const texts = await Promise.all(files.map(async (f) => ({ f, text: await readFile(f, 'utf8').catch(() => '') })));
    expect(texts.find((t) => t.f.endsWith('access.log'))?.text).toMatch(/"uri":"\/api\/widget\/sessions".*"status":502/);
    for (const { f, text } of texts) {
      expect({ file: f, jwt: JWT.exec(text)?.[0] }).toEqual({ file: f, jwt: undefined });
      for (const secret of secrets) expect({ file: f, leaked: text.includes(secret) }).toEqual({ file: f, leaked: false });
    }
  }, 120_000);
});
