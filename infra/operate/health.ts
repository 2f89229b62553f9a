import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { DEMO_WIDGET_ASSISTANT_ID } from '../../examples/backend/src/demo.js';
import { tokenProtocols } from '../../gateway/src/auth/credentials.js';
import { gatewayReplicaPorts } from '../topology/service-names.js';
import type { StackContext } from './stack.js';
import { DEFAULT_PROBE_DIALOG, type ProbeCredentials } from './live-state.js';
import { httpGet, httpJson, PROBE_TIMEOUT_MS } from './probes.js';

// `npm run health`: every /health, the gateway's debug endpoints, and the synthetic delivery
// probe of the seed's basic scenario — an admin panel and a widget on one dialog, a message sent
// through the backend API, both must receive it.

/** One line of the health report. */
export interface HealthCheck {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
  readonly ms: number;
}

/** The health report. */
export interface HealthReport {
  readonly ok: boolean;
  readonly checks: readonly HealthCheck[];
  /** Delivery latency per listener (ms), when the probe ran. */
  readonly probe?: { readonly ok: boolean; readonly latencyMs: Readonly<Record<string, number>>; readonly server?: string };
}

/** Options of the synthetic probe. */
export interface ProbeOptions {
  readonly dialogId?: number;
  readonly widgetAssistantId?: number;
  readonly widgetOrigin?: string;
  readonly timeoutMs?: number;
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const v = await fn();
  return [v, Math.round(performance.now() - t0)];
}

/** A listening client that records frames and resolves when one matches. */
interface Listener {
  readonly name: string;
  readonly ws: WebSocket;
  readonly connected: Promise<Record<string, unknown>>;
  waitFor(match: (frame: Record<string, unknown>) => boolean, timeoutMs: number): Promise<number>;
}

function listen(name: string, url: string, token: string, timeoutMs: number): Listener {
  const ws = new WebSocket(url, tokenProtocols(token), { handshakeTimeout: timeoutMs });
  const frames: { at: number; frame: Record<string, unknown> }[] = [];
  const waiters = new Set<() => void>();
  ws.on('message', (data) => {
    try {
      frames.push({ at: performance.now(), frame: JSON.parse(String(data)) as Record<string, unknown> });
    } catch {
      return;
    }
    for (const w of waiters) w();
  });
  ws.on('error', () => undefined);
  const connected = new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name}: not connected within ${timeoutMs} ms`)), timeoutMs);
    const check = () => {
      const first = frames[0]?.frame;
      if (first) {
        clearTimeout(timer);
        waiters.delete(check);
        if (first.type === 'connected') resolve(first);
        else reject(new Error(`${name}: first frame ${JSON.stringify(first).slice(0, 80)}`));
      }
    };
    waiters.add(check);
    ws.on('unexpected-response', (_q, res) => reject(new Error(`${name}: handshake answered HTTP ${res.statusCode}`)));
    ws.on('close', (code, reason) => reject(new Error(`${name}: closed ${code} ${String(reason)}`)));
  });
  connected.catch(() => undefined);
  return {
    name,
    ws,
    connected,
    waitFor(match, ms) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const hit = frames.find((f) => match(f.frame));
          if (hit) {
            clearTimeout(timer);
            waiters.delete(check);
            resolve(hit.at);
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`${name} did not receive the probe message within ${ms} ms`));
        }, ms);
        waiters.add(check);
        check();
      });
    },
  };
}

/** Opens a widget session through nginx as the embed does; resumes the visitor's dialog when a key is given. */
async function widgetSession(ctx: StackContext, assistant: number, origin: string, visitorKey: string | undefined, timeoutMs: number): Promise<{ token: string; dialogId: number }> {
  const res = await fetch(`${ctx.endpoints.nginx}/api/widget/sessions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ assistant_id: assistant, parent_origin: origin, ...(visitorKey ? { visitor_key: visitorKey } : {}) }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const body = (await res.json().catch(() => ({}))) as { token?: string; dialog_id?: number };
  if (res.status !== 201 || !body.token || !body.dialog_id) throw new Error(`POST /api/widget/sessions answered HTTP ${res.status}: ${JSON.stringify(body).slice(0, 100)}`);
  return { token: body.token, dialogId: body.dialog_id };
}

/**
 * The synthetic probe: admin panel and widget on one dialog through nginx (the widget with a
 * session from the API, which resumes the probe dialog with the visitor key), one message
 * through the backend API; resolves with each listener's delivery latency, or throws saying who
 * missed it.
 */
export async function deliveryProbe(ctx: StackContext, creds: ProbeCredentials, options: ProbeOptions = {}): Promise<{ latencyMs: Record<string, number>; server: string; cleanup: string }> {
  if (!creds.adminToken) throw new Error('no admin token: set REPLYX_ADMIN_TOKEN (an operator JWT) to run the probe');
  const timeoutMs = options.timeoutMs ?? 5000;
  const origin = options.widgetOrigin ?? `http://localhost:${ctx.topology.nginx.port}`;
  const assistant = options.widgetAssistantId ?? DEMO_WIDGET_ASSISTANT_ID;
  const wanted = options.dialogId ?? DEFAULT_PROBE_DIALOG;
  const visitorKey = creds.widgetVisitorKeyFor?.(wanted) ?? creds.widgetVisitorKey;
  const session = await widgetSession(ctx, assistant, origin, visitorKey, timeoutMs);
  if (visitorKey && session.dialogId !== wanted) throw new Error(`the widget's visitor key resumes dialog ${session.dialogId}, not the probe dialog ${wanted}: pass --probe-dialog ${session.dialogId} or the key of dialog ${wanted}`);
  // Without a visitor key the session opens a new dialog, and the probe runs on that one.
  const dialog = session.dialogId;
  const listeners = [
    listen('admin', `${ctx.endpoints.ws}/ws/dialogs/${dialog}`, creds.adminToken, timeoutMs),
    listen('widget', `${ctx.endpoints.ws}/ws/widget/dialogs/${dialog}`, session.token, timeoutMs),
  ];
  try {
    const hellos = await Promise.all(listeners.map((l) => l.connected));
    const nonce = `probe-${randomBytes(6).toString('hex')}`;
    const sentAt = performance.now();
    const waits = listeners.map((l) => l.waitFor((f) => JSON.stringify(f).includes(nonce), timeoutMs));
    // A failed POST below leaves these waiting: their timeouts must not surface as unhandled rejections.
    for (const w of waits) w.catch(() => undefined);
    const res = await fetch(`${ctx.endpoints.nginx}/api/dialogs/${dialog}/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${creds.adminToken}` },
      body: JSON.stringify({ text: `replyx health probe ${nonce}` }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (res.status < 200 || res.status > 299) throw new Error(`POST /api/dialogs/${dialog}/messages answered HTTP ${res.status}: ${(await res.text()).slice(0, 100)}`);
    const settled = await Promise.allSettled(waits);
    const missed = settled.flatMap((s, i) => (s.status === 'rejected' ? [listeners[i]!.name] : []));
    if (missed.length > 0) throw new Error(`${missed.join(' and ')} did not receive the message within ${timeoutMs} ms (desync?)`);
    const latencyMs = Object.fromEntries(settled.map((s, i) => [listeners[i]!.name, Math.round((s as PromiseFulfilledResult<number>).value - sentAt)]));
    return { latencyMs, server: String(hellos[0]!.server ?? '?'), cleanup: await clearProbeMessages(ctx, creds.adminToken, dialog, timeoutMs) };
  } finally {
    for (const l of listeners) l.ws.terminate();
  }
}

/**
 * Whether a customer's widget can connect: a widget session for `origin` on `assistant` through
 * nginx (201, else the API's refusal), then its socket's first frame must be `connected` (the
 * gateway re-checks the origin). Opens one empty visitor dialog for that assistant, as the
 * customer's widget would.
 */
export async function widgetOriginProbe(ctx: StackContext, assistant: number, origin: string, timeoutMs = 5000): Promise<string> {
  const session = await widgetSession(ctx, assistant, origin, undefined, timeoutMs);
  const widget = listen('widget', `${ctx.endpoints.ws}/ws/widget/dialogs/${session.dialogId}`, session.token, timeoutMs);
  try {
    const hello = await widget.connected;
    return `session 201 (dialog ${session.dialogId}), connected via ${String(hello.server ?? '?')}`;
  } finally {
    widget.ws.terminate();
  }
}

/** Deletes the probe's messages from its dialog (only a probe dialog allows it); says what happened. */
async function clearProbeMessages(ctx: StackContext, adminToken: string, dialog: number, timeoutMs: number): Promise<string> {
  try {
    const res = await fetch(`${ctx.endpoints.nginx}/api/dialogs/${dialog}/messages`, { method: 'DELETE', headers: { authorization: `Bearer ${adminToken}` }, signal: AbortSignal.timeout(timeoutMs) });
    if (res.status === 200) return `probe messages deleted (${String(((await res.json()) as { deleted?: unknown }).deleted)})`;
    return `probe message left in dialog ${dialog} (HTTP ${res.status}${res.status === 409 ? ': not a probe dialog' : ''})`;
  } catch (err) {
    return `probe message left in dialog ${dialog} (${(err as Error).message})`;
  }
}

/** The dependencies a `/health` body reports down (pure): backend `db`/`redis` not `ok`, gateway ones `down`. */
export function downDependencies(body: Record<string, unknown>): string[] {
  const names: Record<string, string> = { db: 'Postgres', redis: 'Redis' };
  return Object.entries(names).flatMap(([key, name]) => {
    const v = body[key];
    if (typeof v !== 'string' || ['ok', 'up', 'not-used'].includes(v)) return [];
    return [v === 'down' ? `${name} down` : `${name} down (${v.replace(/^error:\s*/, '')})`];
  });
}

/**
 * One line for a `/health` answer that is not 2xx (pure): the dependencies it reports down first
 * (the cause an operator acts on), then the status and the rest of the body.
 */
export function describeUnhealthy(status: number, body: string): string {
  let parsed: Record<string, unknown> | undefined;
  try {
    const v = JSON.parse(body) as unknown;
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) parsed = v as Record<string, unknown>;
  } catch {
    parsed = undefined;
  }
  if (!parsed) return `HTTP ${status}: ${body.slice(0, 200)}`;
  const down = downDependencies(parsed);
  const rest = Object.entries(parsed)
    .filter(([k]) => k !== 'status' && !(k in { db: 1, redis: 1 } && down.length > 0))
    .map(([k, v]) => `${k} ${typeof v === 'string' ? v : JSON.stringify(v)}`);
  return `${down.length > 0 ? `${down.join(', ')}: ` : ''}HTTP ${status} ${String(parsed.status ?? '')}${rest.length > 0 ? `, ${rest.join(', ')}` : ''}`;
}

/** Runs every health check and the probe (unless skipped). */
export async function runHealth(ctx: StackContext, creds: ProbeCredentials, options: ProbeOptions & { skipProbe?: boolean; skipGateway?: boolean; widgetCheck?: { assistant: number; origin: string } } = {}): Promise<HealthReport> {
  const checks: HealthCheck[] = [];
  const debug: Record<string, string> = creds.debugToken ? { 'X-Debug-Token': creds.debugToken } : {};
  const add = async (name: string, url: string, headers: Record<string, string>, describe: (body: Record<string, unknown>) => string) => {
    const [r, ms] = await timed(() => httpJson(url, headers, PROBE_TIMEOUT_MS));
    checks.push(r.ok ? { name, ok: true, detail: describe((r.value ?? {}) as Record<string, unknown>), ms } : { name, ok: false, detail: r.error, ms });
  };
  // A /health that answers 503 says why in its body: that is the detail, not the bare status.
  const addHealth = async (name: string, url: string, describe: (body: Record<string, unknown>) => string) => {
    const [r, ms] = await timed(() => httpGet(url, {}, PROBE_TIMEOUT_MS));
    if (!r.ok) return void checks.push({ name, ok: false, detail: r.error, ms });
    if (r.value.status < 200 || r.value.status > 299) return void checks.push({ name, ok: false, detail: describeUnhealthy(r.value.status, r.value.body), ms });
    let body: Record<string, unknown> = {};
    try {
      body = JSON.parse(r.value.body) as Record<string, unknown>;
    } catch {
      body = {};
    }
    checks.push({ name, ok: true, detail: describe(body), ms });
  };
  const dialog = options.dialogId ?? DEFAULT_PROBE_DIALOG;
  await add('nginx /health', `${ctx.endpoints.nginx}/health`, {}, () => 'ok');
  await addHealth('backend /health', `${ctx.endpoints.backend}/health`, (b) => `${String(b.status)}, ${String(b.workers)} workers, db ${String(b.db)}, redis ${String(b.redis)}`);
  if (!options.skipGateway) {
    // Local replicas are processes on their own ports: each one's health, not only the first's.
    const gateways: [string, string][] =
      ctx.target === 'local' && ctx.topology.gateway.replicas > 1 ? gatewayReplicaPorts(ctx.topology.gateway).map((port, i) => [`gateway-${i + 1}`, `http://127.0.0.1:${port}`]) : [['gateway', ctx.endpoints.gateway]];
    for (const [name, url] of gateways) {
      await addHealth(`${name} /health`, `${url}/health`, (b) => `${String(b.status)}, broker ${String(b.broker)} (${String(b.redis)}), db ${String(b.db)}, ${String(b.connections)} connections`);
      await add(`${name} status`, `${url}/api/debug/websocket/status`, debug, (b) => `${String(b.instance)} pid ${String(b.pid)}, ${String(b.workers)} worker, ${JSON.stringify(b.connections)}`);
    }
    await add(`gateway sync ${dialog}`, `${ctx.endpoints.gateway}/api/debug/websocket/sync?dialog_id=${dialog}`, debug, (b) => `attached ${JSON.stringify(b.attached)}, last event ${String(b.last_event_id)}`);
  }
  // nginx answers its own /health with plain text: accept it as long as it is 200.
  const nginxRow = checks[0]!;
  if (!nginxRow.ok && /^HTTP 200, not JSON/.test(nginxRow.detail)) checks[0] = { ...nginxRow, ok: true, detail: 'ok' };
  if (options.widgetCheck) {
    const { assistant, origin } = options.widgetCheck;
    const name = `widget origin ${origin} (assistant ${assistant})`;
    const [r, ms] = await timed(() => widgetOriginProbe(ctx, assistant, origin, options.timeoutMs).then((detail) => ({ ok: true, detail }), (err: unknown) => ({ ok: false, detail: (err as Error).message })));
    checks.push({ name, ms, ...r });
  }
  // With /ws/ rolled back to the backend, the gateway only carries publishes: a dead one is still a failure.
  let probe: HealthReport['probe'];
  if (!options.skipProbe) {
    const [r, ms] = await timed(async () => {
      try {
        return { ok: true as const, value: await deliveryProbe(ctx, creds, options) };
      } catch (err) {
        return { ok: false as const, error: (err as Error).message };
      }
    });
    if (r.ok) {
      probe = { ok: true, latencyMs: r.value.latencyMs, server: r.value.server };
      checks.push({ name: `delivery probe (dialog ${dialog})`, ok: true, detail: `admin ${r.value.latencyMs.admin} ms, widget ${r.value.latencyMs.widget} ms via ${r.value.server}; ${r.value.cleanup}`, ms });
    } else {
      probe = { ok: false, latencyMs: {} };
      checks.push({ name: `delivery probe (dialog ${dialog})`, ok: false, detail: r.error, ms });
    }
  }
  return { ok: checks.every((c) => c.ok), checks, ...(probe ? { probe } : {}) };
}
