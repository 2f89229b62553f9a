import { readFile, stat } from 'node:fs/promises';
import pg from 'pg';
import { DEMO_DIALOGS, DEMO_VISITOR_DIALOG_ID, demoSiteTokens, demoWidgetToken, signAdminToken } from '../../examples/backend/src/demo.js';
import { runRollback } from '../../infra/operate/rollback/run.js';
import { resolveContext } from '../../infra/operate/stack.js';
import { nginxLogFiles } from '../../infra/render/nginx.js';
import { reloadAndWait } from '../../infra/targets/local/nginx-workers.js';
import { waitUntil } from '../../infra/targets/local/ports.js';
import { readPid, serviceState } from '../../infra/targets/local/supervisor.js';
import { readRestarts } from '../../infra/targets/local/watchdog.js';
import { startOperatorTestStack, type OperatorTestStack } from '../operator-stack.js';
import { scoreFault, type FaultScore } from './score.js';
import { recordingClient, startPublisher, type Publisher, type RecordingClient } from './traffic.js';

// The reliability fault suite, shared by test/reliability.live.test.ts (CI: one short window
// per fault) and `npm run soak` (longer windows, more clients): a local stack on free ports,
// contract-following clients on every demo dialog, a retrying publisher through nginx, and
// one fault at a time, each scored on its own window of messages.

/** The faults, in the order they run (the rollback's undo must follow the rollback). */
export const FAULTS = [
  'backend restart',
  'gateway restart',
  'gateway SIGKILL',
  'nginx reload',
  'nginx restart',
  'redis restart',
  'postgres restart',
  'rollback --ws-to backend --backend-workers 1',
  'rollback --undo',
] as const;
/** One fault of the suite. */
export type FaultName = (typeof FAULTS)[number];

/** Size of the run. */
export interface ReliabilityOptions {
  /** At least this many messages are sent in each fault's window. */
  readonly messagesPerFault: number;
  readonly ratePerS: number;
  /** Admin clients per demo dialog (sites and the widget come on top). */
  readonly adminsPerDialog: number;
  /** Messages sent before the fault is injected. */
  readonly leadMs?: number;
  readonly log?: (line: string) => void;
  /** Changes to the stack file before the stack starts (default: monitoring off). */
  readonly patch?: Parameters<typeof startOperatorTestStack>[0];
}

/** One fault's score plus what happened to the clients. */
export interface FaultResult extends FaultScore {
  /** `open/total` clients connected at the end of the window. */
  readonly reconnected: string;
  readonly allReconnected: boolean;
  /** Connects beyond the first during the window, summed over clients. */
  readonly reconnects: number;
  /**
   * API requests nginx saw cut by the backend after sending them (nginx's error log: upstream
   * closed, reset or timed out): the requests a restart must never fail. Connection refused
   * (nothing listening) is not one: that request never reached a backend.
   */
  readonly cutRequests: number;
  /** WebSocket handshakes nginx answered with a 5xx (no gateway to take them) during the window, from its JSON access log. */
  readonly refusedHandshakes: number;
  /** Close codes the clients saw during the window, with how often. */
  readonly closeCodes: Readonly<Record<string, number>>;
  readonly resyncs: number;
  /** How long the fault's own command took (restart, rollback). */
  readonly injectMs: number;
  /** Restarts the watchdog counted during the window, by service. */
  readonly watchdogRestarts: Readonly<Record<string, number>>;
}

/** A running reliability run. */
export interface ReliabilityRun {
  readonly stack: OperatorTestStack;
  readonly clients: readonly RecordingClient[];
  /** Injects one fault under traffic and scores its window. */
  fault(name: FaultName): Promise<FaultResult>;
  /**
   * Runs `incident` under traffic (an incident drill: inject a fault, follow a runbook) and
   * scores its window like a fault's; `injectMs` is how long `incident` took.
   */
  window(label: string, incident: () => Promise<void>): Promise<FaultResult>;
  /** Stops clients, publisher and stack. */
  stop(): Promise<void>;
}

/** How long a window waits for every client to be back: the client's backoff cap (30 s) plus a margin. */
const RECONNECT_WAIT_MS = 45_000;

/** nginx's error-log wording for a request the upstream dropped after receiving it. */
/**
 * An API request nginx had sent to a backend that dropped it before answering: connected
 * (`upstream_connect_time` set) but no response header. Refused connections (nothing sent, safe to
 * retry) have no connect time. Read from the JSON access log: request-scoped error lines are off
 * because they quote request lines, tokens included.
 */
export function isCutApiRequest(line: string): boolean {
  if (!line.includes('"kind":"http"')) return false;
  let entry: { uri?: string; status?: number; upstream_connect_time?: string; upstream_header_time?: string };
  try {
    entry = JSON.parse(line) as typeof entry;
  } catch {
    return false;
  }
  const last = (v: string | undefined): string => (v ?? '-').split(/[,:]\s*/).at(-1)!.trim();
  return (entry.uri ?? '').startsWith('/api/') && (entry.status ?? 0) >= 500 && last(entry.upstream_connect_time) !== '-' && last(entry.upstream_header_time) === '-';
}

/** A WebSocket handshake nginx answered itself with a 5xx (502: no upstream listening), from its JSON access log. */
export function isRefusedHandshake(line: string): boolean {
  if (!line.includes('"kind":"ws"')) return false;
  try {
    return ((JSON.parse(line) as { status?: number }).status ?? 0) >= 500;
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts the stack, the clients and the publisher. */
export async function startReliabilityRun(opts: ReliabilityOptions): Promise<ReliabilityRun> {
  const log = opts.log ?? (() => undefined);
  const stack = await startOperatorTestStack(opts.patch ?? ((doc) => doc.setIn(['config', 'replyx:monitoring', 'enabled'], false)));
  const h = stack.handle;
  const clients: RecordingClient[] = [];
  let publisher: Publisher | undefined;
  const db = new pg.Pool({ connectionString: h.plan.databaseUrl, max: 2 });
  db.on('error', () => undefined);
  const stop = async () => {
    for (const c of clients) c.close();
    await publisher?.stop().catch(() => undefined);
    await db.end().catch(() => undefined);
    await stack.stop();
  };
  try {
    const prefix = `rel-${Date.now().toString(36)}`;
    const nginx = `http://127.0.0.1:${h.ports.nginx}`;
    const adminToken = await signAdminToken(h.secrets.jwtSecret, 1, 3600);
    const origin = `http://localhost:${h.ports.nginx}`;
    const sites = await demoSiteTokens(h.secrets.siteTokenSecret);
    const base = { url: nginx, prefix, readToken: () => adminToken };
    for (const d of DEMO_DIALOGS) {
      for (let i = 0; i < opts.adminsPerDialog; i += 1) clients.push(recordingClient({ ...base, name: `admin-${d.id}-${i}`, kind: 'admin', dialogId: d.id, getToken: () => adminToken }));
    }
    for (const s of sites) clients.push(recordingClient({ ...base, name: `site-${s.name}`, kind: 'site', dialogId: s.dialogId, getToken: () => s.token }));
    clients.push(recordingClient({ ...base, name: 'widget', kind: 'widget', dialogId: DEMO_VISITOR_DIALOG_ID, origin, getToken: async () => (await demoWidgetToken(h.secrets.widgetTokenSecret, origin)).token }));
    if (!(await waitUntil(async () => clients.every((c) => c.isOpen()), 30_000, 50))) throw new Error(`clients did not connect: ${clients.filter((c) => !c.isOpen()).map((c) => c.name).join(', ')}`);
    publisher = startPublisher({ api: nginx, token: () => adminToken, dialogs: DEMO_DIALOGS.map((d) => d.id), ratePerS: opts.ratePerS, prefix });
    const pub = publisher;
    log(`stack up (nginx ${nginx}), ${clients.length} clients, publishing ${opts.ratePerS} msg/s`);

    const inject = async (name: FaultName): Promise<void> => {
      switch (name) {
        case 'backend restart':
          return h.restart('backend');
        case 'gateway restart':
          return h.restart('gateway');
        case 'gateway SIGKILL': {
          const gw = h.plan.services.find((s) => s.name === 'gateway')!;
          const before = (await readRestarts(h.dir)).gateway?.restarts ?? 0;
          const pid = await readPid(gw.pidFile);
          if (pid === undefined) throw new Error('gateway has no pid file');
          process.kill(pid, 'SIGKILL');
          // Nobody but the watchdog brings it back.
          const back = await waitUntil(async () => ((await readRestarts(h.dir)).gateway?.restarts ?? 0) > before && (await serviceState(gw)).healthy, 60_000, 100);
          if (!back) throw new Error('the watchdog did not restart the gateway within 60 s');
          return;
        }
        case 'nginx reload': {
          const pid = await readPid(h.plan.services.find((s) => s.name === 'nginx')!.pidFile);
          if (pid === undefined) throw new Error('nginx has no pid file');
          const { reloaded } = await reloadAndWait(pid);
          if (!reloaded) throw new Error('nginx did not start new workers after SIGHUP');
          return;
        }
        case 'nginx restart':
          return h.restart('nginx');
        case 'redis restart':
          return h.restart('redis');
        case 'postgres restart':
          // A scrape first, as Prometheus would have done: the primary then holds a metrics connection too.
          await fetch(`http://127.0.0.1:${h.ports.backend}/metrics`).then((r) => r.arrayBuffer()).catch(() => undefined);
          return h.restart('postgres');
        case 'rollback --ws-to backend --backend-workers 1':
        case 'rollback --undo': {
          const ctx = await resolveContext({ stack: 'local', 'project-dir': stack.projectDir, 'state-dir': stack.stateDir });
          const lines: string[] = [];
          const report = await runRollback(ctx, name === 'rollback --undo' ? 'undo' : { wsRoute: 'backend', backendWorkers: 1 }, { print: (l) => lines.push(l) }).catch((err: unknown) => {
            throw new Error(`${name} failed: ${(err as Error).message}\n${lines.join('\n')}`);
          });
          log(`  ${name}: ${JSON.stringify({ to: report.to, totalMs: report.totalMs })}`);
          return;
        }
      }
    };

    const scoreWindow = async (name: string, incident: () => Promise<void>): Promise<FaultResult> => {
      const from = pub.sent.length;
      const accessLog = nginxLogFiles(h.plan.nginxPrefixDir).access;
      const accessLogFrom = await stat(accessLog).then((st) => st.size, () => 0);
      const connectsBefore = clients.map((c) => c.connects);
      const closesBefore = clients.map((c) => c.closes.length);
      const resyncsBefore = clients.reduce((n, c) => n + c.resyncs, 0);
      const restartsBefore = await readRestarts(h.dir);
      await sleep(opts.leadMs ?? 1500);
      const faultAt = Date.now();
      await incident();
      const injectMs = Date.now() - faultAt;
      log(`  ${name}: injected in ${injectMs} ms; ${pub.pending()} requests pending`);
      // Keep the window open until it holds enough messages and the stack had time to settle.
      await waitUntil(async () => pub.sent.length - from >= opts.messagesPerFault && Date.now() - faultAt - injectMs >= 2000, 600_000, 50);
      const window = pub.sent.slice(from);
      const texts = window.map((m) => m.text);
      // Wait for every message of the window to be answered and then delivered (or not) everywhere.
      await waitUntil(async () => window.every((m) => m.acceptedAt !== undefined || m.rejected !== undefined), 120_000, 100);
      const deliveredEverywhere = () =>
        window.every((m) => m.acceptedAt === undefined || clients.every((c) => c.dialogId !== m.dialogId || c.firstSeenAt.has(m.text)));
      // Longer than the contract's largest backoff (30 s): a client that backed off while the
      // service was down must get its turn to reconnect and resume before it is judged.
      await waitUntil(async () => deliveredEverywhere() && clients.every((c) => c.isOpen()), RECONNECT_WAIT_MS, 100);
      log(`  ${name}: window of ${window.length} settled; ${clients.filter((c) => !c.isOpen()).length} clients not open`);
      const rows = new Map<string, number>();
      const counted = await waitUntil(
        async () => {
          try {
            const r = await db.query<{ text: string; n: string }>('SELECT text, count(*) AS n FROM messages WHERE text = ANY($1::text[]) GROUP BY text', [texts]);
            rows.clear();
            for (const row of r.rows) rows.set(row.text, Number(row.n));
            return true;
          } catch {
            return false;
          }
        },
        30_000,
        500,
      );
      if (!counted) throw new Error('could not count stored rows (Postgres unreachable)');
      const open = clients.filter((c) => c.isOpen()).length;
      const restartsAfter = await readRestarts(h.dir);
      const watchdogRestarts = Object.fromEntries(
        Object.entries(restartsAfter)
          .map(([svc, r]) => [svc, r.restarts - (restartsBefore[svc]?.restarts ?? 0)] as const)
          .filter(([, n]) => n > 0),
      );
      const accessLines = (await readFile(accessLog).catch(() => Buffer.alloc(0))).subarray(accessLogFrom).toString('utf8').split('\n');
      const cut = accessLines.filter(isCutApiRequest);
      for (const l of cut.slice(0, 3)) log(`  ${name}: nginx: ${l.slice(0, 300)}`);
      const score = scoreFault({ fault: name, sent: window, clients, rows, faultAt });
      return {
        ...score,
        reconnected: `${open}/${clients.length}`,
        allReconnected: open === clients.length,
        cutRequests: cut.length,
        refusedHandshakes: accessLines.filter(isRefusedHandshake).length,
        reconnects: clients.reduce((n, c, i) => n + c.connects - connectsBefore[i]!, 0),
        closeCodes: clients.flatMap((c, i) => c.closes.slice(closesBefore[i])).reduce<Record<string, number>>((acc, code) => ({ ...acc, [code]: (acc[code] ?? 0) + 1 }), {}),
        resyncs: clients.reduce((n, c) => n + c.resyncs, 0) - resyncsBefore,
        injectMs,
        watchdogRestarts,
      };
    };
    return { stack, clients, stop, window: scoreWindow, fault: (name) => scoreWindow(name, () => inject(name)) };
  } catch (err) {
    await stop();
    throw err;
  }
}
