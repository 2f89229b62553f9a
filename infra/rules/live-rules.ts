import { CloseCodes } from '../../gateway/src/close-codes.js';
import { WS_ROUTE_HEADER } from '../../examples/backend/src/legacy-route.js';
import { directiveDiff, formatDirectiveDiff } from '../render/nginx-diff.js';
import type { Topology } from '../topology/index.js';
import { isGatewayProcess } from '../topology/service-names.js';
import { applyFix, restartFix, ruleById, rulesOfKind, type FixContext, type RestartableService, type Rule, type RuleIdOfKind } from './catalog.js';
import { result, type RuleResult } from './result.js';

// Live architecture rules: pure predicates over what the check observed on a running stack;
// ids, titles and fixes come from the rule table (catalog.ts). The target's surface does the
// I/O and fills a LiveState; these functions only judge it, so each rule is tested on crafted
// observations. A detail never quotes a secret: settings that differ are named by key, leaked
// tokens by file and line.

/** One observation: the value seen, or why it could not be seen. */
export type Probe<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: string };

/** The config the running nginx loaded, and where it was read (`nginx -T` of the master's file, the container's file). */
export interface RunningConfig {
  readonly text: string;
  readonly source: string;
  /** Set when the file changed after nginx loaded it (an edit without a reload): what runs is older than the text. */
  readonly notLoaded?: string;
}

/** One service's process as found on the machine. */
export interface ProcessObservation {
  readonly service: string;
  readonly pid?: number;
  readonly running: boolean;
  /** Its port is listened on by this process (or one of its children). */
  readonly listening: boolean;
  /** Who else listens on the port, when it is not the service ("python3 (pid 12)"). */
  readonly foreignListener?: string;
}

/** A setting a service loaded that differs from the one rendered from the stack file. */
export interface SettingDrift {
  readonly key: string;
  /** Secret settings are compared, never shown. */
  readonly secret: boolean;
  readonly expected?: string;
  readonly actual?: string;
}

/** The settings one service runs with, compared to the rendered ones. */
export interface SettingsObservation {
  readonly service: string;
  readonly drift: readonly SettingDrift[];
}

/** One log file's last lines. */
export interface LogObservation {
  readonly file: string;
  readonly lines: readonly string[];
}

/** Everything the live rules judge. Absent probes are reported as skipped. */
export interface LiveState {
  /** The config the running nginx loaded. */
  readonly runningConfig?: Probe<RunningConfig>;
  /** The config rendered from the stack file now. */
  readonly renderedConfig?: string;
  /** Every service's process and listener (targets that can see processes). */
  readonly processes?: Probe<readonly ProcessObservation[]>;
  /** Settings each service loaded (targets that can read them), compared with the rendered ones. */
  readonly settings?: Probe<readonly SettingsObservation[]>;
  /** First frame received on a `/ws/` handshake made through nginx. */
  readonly wsFirstFrame?: Probe<unknown>;
  /** Body of the gateway's GET /api/debug/websocket/status. */
  readonly gatewayStatus?: Probe<unknown>;
  /** The backend's GET /health: status code and JSON body (a 503 still says which dependency is down). */
  readonly backendHealth?: Probe<{ readonly status: number; readonly body: unknown }>;
  /** Redis PING answered. */
  readonly redis?: Probe<true>;
  /** Postgres SELECT 1 answered. */
  readonly postgres?: Probe<true>;
  /** GET /api/debug/websocket/status through nginx. */
  readonly debugThroughNginx?: Probe<{ readonly status: number; readonly body: string }>;
  /** The tails of every log the stack writes (nginx access and error logs, services' logs). */
  readonly logs?: Probe<readonly LogObservation[]>;
  /** Secret values of this stack to look for in the logs (never printed). */
  readonly knownSecrets?: readonly { readonly name: string; readonly value: string }[];
}

/** The rules of `npm run check`'s live part, in the order it prints them. */
export const LIVE_RULES: readonly Rule[] = rulesOfKind('live');

type LiveRuleId = RuleIdOfKind<'live'>;

function record(value: unknown): Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

/** Reads the broker kind from a status body: `"redis"` or `{kind|type: "redis", ...}`. */
export function brokerKind(status: unknown): string | undefined {
  const broker = record(status).broker;
  if (typeof broker === 'string') return broker;
  const b = record(broker);
  const kind = b.kind ?? b.type ?? b.mode ?? b.name;
  return typeof kind === 'string' ? kind : undefined;
}

/** Compares the settings a service loaded with the rendered ones; secret values are compared but not kept. */
export function settingsDrift(expected: Readonly<Record<string, string>>, actual: Readonly<Record<string, string>>, secretKeys: ReadonlySet<string>): SettingDrift[] {
  const out: SettingDrift[] = [];
  for (const [key, want] of Object.entries(expected)) {
    const got = actual[key];
    if (got === want) continue;
    const secret = secretKeys.has(key);
    out.push({ key, secret, ...(secret ? {} : { expected: want, ...(got !== undefined ? { actual: got } : {}) }) });
  }
  return out;
}

/** A leaked credential in a log: where and what kind, never the value. */
export interface LogLeak {
  readonly file: string;
  readonly line: number;
  readonly kind: string;
}

const JWT = /eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/;
// Query parameters and headers that carry credentials; a value that is a redaction marker is fine.
const CREDENTIAL_PARAM = /[?&;]((?:site_|access_|widget_|admin_)?token|visitor_key|key|secret)=([^&\s"';]+)/i;
const REDACTED = /^(?:\[?redacted\]?|<redacted>|\*+|-|%5Bredacted%5D)$/i;

/** Finds tokens and known secrets in log lines: JWTs, credential query parameters, the stack's own secret values. */
export function findLogLeaks(logs: readonly LogObservation[], secrets: readonly { readonly name: string; readonly value: string }[] = []): LogLeak[] {
  const leaks: LogLeak[] = [];
  const known = secrets.filter((s) => s.value.length >= 12);
  for (const log of logs) {
    log.lines.forEach((text, i) => {
      const secret = known.find((s) => text.includes(s.value));
      const param = CREDENTIAL_PARAM.exec(text);
      const kind = secret
        ? `the stack's ${secret.name}`
        : JWT.test(text)
          ? 'a JWT'
          : param && !REDACTED.test(param[2]!) && param[2]!.length >= 8
            ? `a ${param[1]}= value`
            : undefined;
      if (kind) leaks.push({ file: log.file, line: i + 1, kind });
    });
  }
  return leaks;
}

/** A log line with every credential {@link findLogLeaks} would report replaced by `[redacted]`. */
export function redactLogLine(text: string, secrets: readonly { readonly name: string; readonly value: string }[] = []): string {
  let out = text;
  for (const s of secrets) if (s.value.length >= 12) out = out.split(s.value).join('[redacted]');
  out = out.replace(new RegExp(JWT.source, 'g'), '[redacted]');
  return out.replace(new RegExp(CREDENTIAL_PARAM.source, 'gi'), (match: string, name: string, value: string) => (REDACTED.test(value) || value.length < 8 ? match : `${match.slice(0, match.length - value.length - name.length - 1)}${name}=[redacted]`));
}

/** Options of {@link evaluateLiveRules}. */
export interface LiveRuleOptions extends Omit<FixContext, 'topology'> {
  /** The running config's rows of the nginx rules, so a failed handshake can name its cause. */
  readonly runningNginx?: readonly RuleResult[];
}

/** Judges one observation; a failed probe fails the rule with the rule's probe fix. */
function probeResult<T>(id: LiveRuleId, probe: Probe<T> | undefined, what: string, ctx: FixContext, judge: (v: T) => RuleResult): RuleResult {
  if (probe === undefined) return result(id, 'skip', `${what} not probed`, ctx);
  if (!probe.ok) return result(id, 'fail', `${what}: ${probe.error}`, ctx, probeFix(id, ctx));
  return judge(probe.value);
}

const probeFix = (id: LiveRuleId, ctx: FixContext): string => {
  const rule = ruleById(id);
  return (rule.probeFix ?? rule.fix)(ctx);
};

/** Up to `n` items, then how many more. */
function some(items: readonly string[], n = 3): string {
  return items.length <= n ? items.join('; ') : `${items.slice(0, n).join('; ')}; and ${items.length - n} more`;
}

function driftRow(live: LiveState, ctx: FixContext): RuleResult {
  const id = 'running-config-drift';
  return probeResult(id, live.runningConfig, 'running nginx config', ctx, (running) => {
    if (live.renderedConfig === undefined) return result(id, 'skip', 'no rendered config to compare with', ctx);
    let lines: string[];
    try {
      lines = formatDirectiveDiff(directiveDiff(live.renderedConfig, running.text));
    } catch (err) {
      return result(id, 'fail', `running ${running.source} does not parse: ${(err as Error).message}`, ctx);
    }
    if (running.notLoaded) return result(id, 'fail', `${running.notLoaded}${lines.length > 0 ? `; the file differs from the rendered config by ${lines.length} directive(s) (- rendered only, + running only): ${some(lines)}` : ''}`, ctx);
    return lines.length === 0
      ? result(id, 'pass', `running ${running.source} = rendered (every directive)`, ctx)
      : result(id, 'fail', `running ${running.source} differs from the rendered config by ${lines.length} directive(s) (- rendered only, + running only): ${some(lines, 6)}`, ctx);
  });
}

function processesRow(live: LiveState, ctx: FixContext): RuleResult {
  const id = 'services-running';
  return probeResult(id, live.processes, 'service processes', ctx, (procs) => {
    const problems = procs.flatMap((p) => {
      if (!p.running) return [`${p.service} is not running${p.foreignListener ? ` and ${p.foreignListener} holds its port` : ''}`];
      if (!p.listening) return [`${p.service} (pid ${p.pid ?? '?'}) does not listen on its port${p.foreignListener ? `: ${p.foreignListener} does` : ''}`];
      return [];
    });
    if (problems.length === 0) return result(id, 'pass', `${procs.map((p) => `${p.service} ${p.pid ?? '?'}`).join(', ')} running and listening`, ctx);
    const dead = procs.filter((p) => !p.running);
    // One stopped service is restarted on its own; anything else (foreign listeners, several) is what apply converges.
    const fix = dead.length === 1 && problems.length === 1 && !dead[0]!.foreignListener && isRestartable(dead[0]!.service) ? restartFix(ctx, dead[0]!.service) : applyFix(ctx);
    return result(id, 'fail', problems.join('; '), ctx, fix);
  });
}

const RESTARTABLE = ['nginx', 'backend', 'redis', 'postgres'] as const;
// A gateway replica (`gateway-2`) is restarted on its own, like the single `gateway`.
const isRestartable = (s: string): s is RestartableService => (RESTARTABLE as readonly string[]).includes(s) || isGatewayProcess(s);

function settingsRow(topology: Topology, live: LiveState, ctx: FixContext): RuleResult {
  const id = 'service-settings';
  const problems: string[] = [];
  if (live.settings?.ok) {
    for (const s of live.settings.value) {
      if (s.drift.length === 0) continue;
      const keys = s.drift.map((d) => (d.secret ? `${d.key} (secret, differs)` : `${d.key}=${d.actual ?? '(unset)'}, stack file ${d.expected}`));
      problems.push(`${s.service} runs with ${keys.join(', ')}`);
    }
  }
  // The gateway announces the heartbeat it loaded in its first frame: any target can read it.
  const frame = live.wsFirstFrame?.ok ? record(live.wsFirstFrame.value) : {};
  if (frame.server === 'ws-gateway' && typeof frame.heartbeat_ms === 'number' && frame.heartbeat_ms !== topology.gateway.heartbeatMs) {
    problems.push(`the gateway's heartbeat is ${frame.heartbeat_ms} ms, stack file ${topology.gateway.heartbeatMs} ms`);
  }
  if (problems.length > 0) return result(id, 'fail', problems.join('; '), ctx);
  if (live.settings === undefined && frame.heartbeat_ms === undefined) return result(id, 'skip', 'service settings not observable on this target', ctx);
  if (live.settings && !live.settings.ok) return result(id, 'fail', `service settings: ${live.settings.error}`, ctx);
  const services = live.settings?.ok ? live.settings.value.map((s) => s.service) : [];
  return result(id, 'pass', `${services.length > 0 ? `${services.join(', ')} run the rendered settings` : 'gateway heartbeat as rendered'}`, ctx);
}

/**
 * The data store the check found down (its own Redis PING or Postgres SELECT 1 failed), if any:
 * when one is down, the backend's and the gateway's failures are its symptoms, and restarting
 * them would repair nothing.
 */
export function downStore(live: LiveState): { service: 'postgres' | 'redis'; name: string; error: string } | undefined {
  if (live.postgres && !live.postgres.ok) return { service: 'postgres', name: 'Postgres', error: live.postgres.error };
  if (live.redis && !live.redis.ok) return { service: 'redis', name: 'Redis', error: live.redis.error };
  return undefined;
}

/** Why a handshake that got no `connected` frame failed, in terms of what to repair. */
function handshakeDiagnosis(topology: Topology, error: string, live: LiveState, options: LiveRuleOptions, ctx: FixContext): { detail: string; fix: string } {
  const server = topology.wsRoute === 'gateway' ? 'gateway' : 'backend';
  const upgrade = options.runningNginx?.find((r) => r.id === 'ws-upgrade-headers' && r.status === 'fail');
  const status = /HTTP (\d{3})/.exec(error)?.[1];
  const procs = live.processes?.ok ? live.processes.value : [];
  const serves = (name: string) => (server === 'gateway' ? isGatewayProcess(name) : name === server);
  const proc = procs.find((p) => p.service === 'nginx' && !p.running) ?? procs.find((p) => serves(p.service) && !p.running);
  if (status && upgrade) {
    return { detail: `handshake answered HTTP ${status}: the running nginx does not forward the WebSocket upgrade (${upgrade.detail.replace(/^running [^:]+: /, '')}), so the ${server} saw a plain GET`, fix: applyFix(ctx) };
  }
  if (proc && !proc.running) return { detail: `/ws/ handshake through nginx: ${error}; ${proc.service} is not running`, fix: restartFix(ctx, isRestartable(proc.service) ? proc.service : server) };
  if (status === '502' || status === '504') return { detail: `handshake answered HTTP ${status}: nginx cannot reach the ${server}`, fix: restartFix(ctx, server) };
  if (error.startsWith(`closed with ${CloseCodes.NOT_ROUTED.code} `)) {
    // The backend's legacy /ws/ refuses handshakes nginx did not mark from the stack plan's route.
    return {
      detail: `/ws/ reached the backend, which refused it with ${CloseCodes.NOT_ROUTED.code}: the running nginx sends /ws/ to the backend without the ${WS_ROUTE_HEADER} mark the stack file renders for wsRoute=backend (wsRoute=${topology.wsRoute}; a hand edit, see running-config-drift); clients back off and resume once the rendered config is back`,
      fix: applyFix(ctx),
    };
  }
  if (/4001/.test(error)) return { detail: `the ${server} rejected the stack's operator token (4001): it runs with another JWT secret than the stack's`, fix: applyFix(ctx) };
  // A 1011 or a timeout while a store is down is that store's outage (the gateway checks access in Postgres).
  const store = downStore(live);
  if (store) return { detail: `/ws/ handshake through nginx: ${error}; cause: ${store.name} is down (${store.service} row)`, fix: restartFix(ctx, store.service) };
  // Connections accepted but nothing answered, its own status endpoint silent too: the process hangs.
  const statusProbe = live.gatewayStatus;
  if (server === 'gateway' && /no frame within|timeout|timed out/i.test(error) && statusProbe && !statusProbe.ok && /timeout|timed out|aborted/i.test(statusProbe.error)) {
    return { detail: `/ws/ handshake through nginx: ${error}; the gateway accepts connections but answers nothing, its status endpoint neither (hung: stopped, or its event loop blocked)`, fix: restartFix(ctx, 'gateway') };
  }
  return { detail: `/ws/ handshake through nginx: ${error}`, fix: applyFix(ctx) };
}

function handshakeRow(topology: Topology, live: LiveState, options: LiveRuleOptions, ctx: FixContext): RuleResult {
  const id = 'ws-handshake';
  if (live.wsFirstFrame === undefined) return result(id, 'skip', '/ws/ handshake not probed', ctx);
  if (!live.wsFirstFrame.ok) {
    const d = handshakeDiagnosis(topology, live.wsFirstFrame.error, live, options, ctx);
    return result(id, 'fail', d.detail, ctx, d.fix);
  }
  const f = record(live.wsFirstFrame.value);
  if (f.type !== 'connected') return result(id, 'fail', `first frame is not "connected" but type ${JSON.stringify(f.type ?? null)}`, ctx);
  const server = typeof f.server === 'string' ? f.server : '(none)';
  const servedByGateway = server === 'ws-gateway';
  const ok = topology.wsRoute === 'gateway' ? servedByGateway : !servedByGateway;
  return ok
    ? result(id, 'pass', `connected frame from ${server}${typeof f.instance === 'string' ? ` (${f.instance})` : ''}`, ctx)
    : result(id, 'fail', `wsRoute=${topology.wsRoute} but /ws/ was answered by ${server}: the running nginx routes /ws/ elsewhere`, ctx);
}

function backendRow(topology: Topology, live: LiveState, ctx: FixContext): RuleResult {
  const id = 'backend-workers';
  const store = downStore(live);
  if (live.backendHealth && !live.backendHealth.ok && store) {
    // The backend's /health waits on the store that is down: that store is the thing to repair.
    return result(id, 'fail', `backend /health: ${live.backendHealth.error}; cause: ${store.name} is down (${store.service} row)`, ctx, restartFix(ctx, store.service));
  }
  return probeResult(id, live.backendHealth, 'backend /health', ctx, ({ status, body }) => {
    const b = record(body);
    const workers = b.workers;
    if (typeof workers !== 'number') return result(id, 'fail', `backend /health answered HTTP ${status} without a worker count`, ctx, probeFix(id, ctx));
    // A 503 for a dependency (Redis, Postgres) is that dependency's row; the count is still judged here.
    const degraded = status >= 500 ? ` (backend reports ${Object.entries(b).filter(([k, v]) => k !== 'status' && typeof v === 'string' && /down|error|fail/.test(v)).map(([k]) => `${k} down`).join(', ') || `HTTP ${status}`})` : '';
    return workers === topology.backend.workers
      ? result(id, 'pass', `${workers} workers${degraded}`, ctx)
      : result(id, 'fail', `backend runs ${workers} workers, stack file says ${topology.backend.workers}`, ctx);
  });
}

function logsRow(live: LiveState, ctx: FixContext): RuleResult {
  const id = 'no-secrets-in-logs';
  return probeResult(id, live.logs, 'logs', ctx, (logs) => {
    const leaks = findLogLeaks(logs, live.knownSecrets);
    const lines = logs.reduce((n, l) => n + l.lines.length, 0);
    if (leaks.length === 0) return result(id, 'pass', `${logs.length} logs, ${lines} lines, no token or secret`, ctx);
    const byFile = new Map<string, LogLeak[]>();
    for (const l of leaks) byFile.set(l.file, [...(byFile.get(l.file) ?? []), l]);
    const where = [...byFile.entries()].map(([file, ls]) => `${file}: ${ls.length} line${ls.length === 1 ? '' : 's'} (first line ${ls[0]!.line}, ${[...new Set(ls.map((l) => l.kind))].join(', ')})`);
    return result(id, 'fail', `credentials in logs: ${some(where)}`, ctx);
  });
}

/** Evaluates every live rule against the observations. */
export function evaluateLiveRules(topology: Topology, live: LiveState, options: LiveRuleOptions = {}): RuleResult[] {
  const { runningNginx: _running, ...fixContext } = options;
  const ctx: FixContext = { ...fixContext, topology };
  const L = (id: LiveRuleId, status: RuleResult['status'], detail: string) => result(id, status, detail, ctx);
  const out: RuleResult[] = [driftRow(live, ctx), processesRow(live, ctx), settingsRow(topology, live, ctx), handshakeRow(topology, live, options, ctx)];

  if (topology.wsRoute === 'backend' && live.gatewayStatus && !live.gatewayStatus.ok) {
    out.push(L('gateway-workers', 'skip', `wsRoute=backend and the gateway does not answer (${live.gatewayStatus.error})`));
  } else {
    out.push(
      probeResult('gateway-workers', live.gatewayStatus, 'gateway status', ctx, (status) => {
        const s = record(status);
        const workers = typeof s.workers === 'number' ? s.workers : undefined;
        const broker = brokerKind(status);
        if (workers === 1 || broker === 'redis') return L('gateway-workers', 'pass', `workers ${workers ?? '?'}, broker ${broker ?? '?'}`);
        return L('gateway-workers', 'fail', `gateway reports workers ${workers ?? 'unknown'} and broker ${broker ?? 'unknown'}: connections split across workers without a shared broker desync`);
      }),
    );
  }
  out.push(backendRow(topology, live, ctx));
  out.push(probeResult('redis', live.redis, 'Redis', ctx, () => L('redis', 'pass', 'PONG')));
  out.push(probeResult('postgres', live.postgres, 'Postgres', ctx, () => L('postgres', 'pass', 'SELECT 1 ok')));
  out.push(
    probeResult('debug-not-public', live.debugThroughNginx, 'GET /api/debug/ through nginx', ctx, ({ status, body }) => {
      let fromUpstream = false;
      try {
        JSON.parse(body);
        fromUpstream = true;
      } catch {
        // nginx's own error pages are HTML: the request never left nginx.
      }
      return status >= 400 && !fromUpstream
        ? L('debug-not-public', 'pass', `nginx answers ${status}`)
        : L('debug-not-public', 'fail', `GET /api/debug/websocket/status through nginx got ${status}${fromUpstream ? ' from an upstream' : ''}`);
    }),
  );
  out.push(logsRow(live, ctx));
  const order = new Map(LIVE_RULES.map((r, i) => [r.id, i]));
  return out.sort((a, b) => order.get(a.id)! - order.get(b.id)!);
}
