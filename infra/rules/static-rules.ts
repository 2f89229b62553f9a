import {
  accessLogsInEffect,
  childrenNamed,
  COMBINED_LOG_FORMAT,
  effectiveDirectives,
  httpBlock,
  logFormats,
  matchLocation,
  nginxTimeMs,
  parseNginxConfig,
  resolveProxyPass,
  serverForPort,
  tokenCarryingVariablesIn,
  type NginxDirective,
} from '../render/nginx-reader.js';
import type { Topology } from '../topology/index.js';
import { applyFix, rulesOfKind, rulesReading, type FixContext, type Rule, type RuleId, type RuleIdWhere } from './catalog.js';
import { readChecksumFromConfig } from '../render/nginx.js';
import { topologyChecksum } from '../topology/index.js';
import { result, type RuleResult } from './result.js';
import { idleTimeoutsOf, TOPOLOGY_FINDINGS } from './topology-rules.js';
import { gatewayReplicaPorts } from '../topology/service-names.js';
import { dnsStalenessS, FARGATE_MAX_STOP_TIMEOUT_S, gatewayDrainS, stopPlans } from '../render/deploy-timing.js';

// Static architecture rules: pure predicates over the topology and the nginx config rendered
// from it; ids, titles and fixes come from the rule table (catalog.ts). Every rule reads the
// config through the parsed tree and the URIs clients really use, so a template that routes
// /ws/ somewhere else is caught whatever its layout.

/** What the static rules look at. `nginxConfig` is absent for targets without nginx (aws). */
export interface StaticInput {
  readonly topology: Topology;
  /** The rendered nginx config text. */
  readonly nginxConfig?: string;
  /** The checksum read from the rendered config's header (readChecksumFromConfig). */
  readonly configChecksum?: string;
  /** topologyChecksum(topology): what the header must carry. */
  readonly expectedChecksum?: string;
}

/** WebSocket paths of the gateway contract; every one must reach the same upstream. */
export const WS_PROBE_URIS = ['/ws/dialogs/123', '/ws/widget/dialogs/123', '/ws/site/dialogs/123'] as const;
/** API paths that must reach the backend. */
export const API_PROBE_URIS = ['/api/site/dialogs/123/messages', '/api/dialogs/123/messages'] as const;
/** Paths nginx must never pass to an upstream. */
export const BLOCKED_PROBE_URIS: Readonly<Record<'debug-blocked' | 'internal-blocked' | 'metrics-blocked', readonly string[]>> = {
  'debug-blocked': ['/api/debug/websocket/status', '/api/debug/websocket/sync'],
  'internal-blocked': ['/internal/publish'],
  'metrics-blocked': ['/metrics'],
};

/** The rules of `npm run check`'s static part, in the order it prints them. */
export const STATIC_RULES: readonly Rule[] = rulesOfKind('static');

type StaticTopologyRuleId = RuleIdWhere<'static', 'topology'>;

// What a static row says when a topology rule holds (its failures say what the rule found).
const TOPOLOGY_PASS_DETAIL: Readonly<Record<StaticTopologyRuleId, (t: Topology) => string>> = {
  'single-gateway-or-broker': (t) => (t.gateway.replicas === 1 ? `1 gateway process (broker ${t.gateway.broker})` : `${t.gateway.replicas} gateway processes share the Redis broker`),
  'desync-risk': (t) => (t.wsRoute === 'gateway' ? '/ws/ served by the gateway' : '/ws/ served by a single backend worker'),
  'legacy-widget-auth-off': () => 'widgets connect with session tokens only',
  'aws-https': (t) => (t.target === 'aws' ? 'HTTPS on 443 with aws.certificateArn; HTTP redirects to it' : `no load balancer on the ${t.target} target`),
  'stop-timeout-covers-drain': (t) => {
    const plans = stopPlans(t);
    return `gateway ${plans.gateway.graceS} s, nginx ${plans.nginx.graceS} s before SIGKILL${t.target === 'aws' ? ` (Fargate allows ${FARGATE_MAX_STOP_TIMEOUT_S} s)` : ''}`;
  },
  'nginx-shutdown-covers-drain': (t) => `worker_shutdown_timeout ${t.nginx.workerShutdownTimeoutS} s >= drain window ${gatewayDrainS(t)} s`,
  'dns-staleness-within-drain': (t) =>
    t.target === 'local' ? 'nginx proxies to fixed loopback ports (no DNS)' : `DNS answers reused for at most ${dnsStalenessS(t.target)} s <= drain window ${gatewayDrainS(t)} s`,
  'heartbeat-vs-timeouts': (t) => `heartbeat ${t.gateway.heartbeatMs / 1000} s < ${idleTimeoutsOf(t).map((timeout) => `${timeout.label} ${timeout.seconds} s`).join(', ')}`,
};

function topologyRows(t: Topology, ctx: FixContext): RuleResult[] {
  return rulesReading('topology')
    .filter((r): r is typeof r & { readonly id: StaticTopologyRuleId } => r.kind === 'static')
    .map((rule) => {
      const findings = TOPOLOGY_FINDINGS[rule.id](t);
      return findings.length === 0 ? result(rule.id, 'pass', TOPOLOGY_PASS_DETAIL[rule.id](t), ctx) : result(rule.id, 'fail', findings.map((f) => f.message).join('; '), ctx);
    });
}

/** The directive blocks from a location out to http, innermost first, for inheritance. */
function chainFor(tree: readonly NginxDirective[], server: NginxDirective, location: NginxDirective | undefined): (readonly NginxDirective[] | undefined)[] {
  return [location?.block, server.block, httpBlock(tree)];
}

function proxyTargetPorts(tree: readonly NginxDirective[], location: NginxDirective | undefined): { ports: number[]; label: string } | undefined {
  const pass = childrenNamed(location?.block, 'proxy_pass')[0];
  if (!pass) return undefined;
  const resolved = resolveProxyPass(tree, pass.args[0] ?? '');
  if (!resolved || resolved.servers.length === 0) return { ports: [], label: pass.args[0] ?? '' };
  return { ports: resolved.servers.map((s) => s.port), label: `${resolved.upstream ?? pass.args[0]} (${resolved.servers.map((s) => `${s.host}:${s.port}`).join(', ')})` };
}

function isBlocking(location: NginxDirective | undefined): boolean {
  if (!location) return true;
  const ret = childrenNamed(location.block, 'return')[0];
  if (ret && /^4\d\d$/.test(ret.args[0] ?? '')) return true;
  if (childrenNamed(location.block, 'deny').some((d) => d.args[0] === 'all')) return true;
  return childrenNamed(location.block, 'proxy_pass').length === 0 && childrenNamed(location.block, 'fastcgi_pass').length === 0;
}

/** Up to three items, then how many more: keeps a detail readable when many locations share a fault. */
function some(items: readonly string[]): string {
  return items.length <= 3 ? items.join(', ') : `${items.slice(0, 3).join(', ')} and ${items.length - 3} more`;
}

/**
 * ws-log-no-query: every access log in effect anywhere (not only /ws/'s: an
 * `/api/...?site_token=` request is logged too) writes a format without token-carrying variables.
 */
function logRow(tree: readonly NginxDirective[], ctx: FixContext): RuleResult {
  const formats = logFormats(tree);
  const used = new Set<string>();
  const leaks = new Map<string, { problem: string; scopes: string[] }>();
  for (const log of accessLogsInEffect(tree)) {
    if (log.format === 'off') continue;
    const format = log.format === 'combined' ? COMBINED_LOG_FORMAT : formats.get(log.format);
    const found = format === undefined ? [] : tokenCarryingVariablesIn(format);
    const problem =
      format === undefined
        ? `access_log uses undefined format "${log.format}"`
        : found.length === 0
          ? undefined
          : `${log.directive ? `format "${log.format}"` : 'no access_log, so nginx\'s default "combined" format'} logs ${found.join(', ')}`;
    if (problem === undefined) {
      used.add(log.format);
      continue;
    }
    const leak = leaks.get(problem) ?? { problem, scopes: [] };
    leak.scopes.push(log.scope);
    leaks.set(problem, leak);
  }
  if (leaks.size > 0) {
    const detail = [...leaks.values()].map((l) => `${l.problem} (${some(l.scopes)})`).join('; ');
    return result('ws-log-no-query', 'fail', `tokens can reach the access log: ${detail}`, ctx);
  }
  return result('ws-log-no-query', 'pass', used.size === 0 ? 'access_log off everywhere' : `formats ${[...used].join(', ')} log no query string`, ctx);
}

function workerShutdownRow(tree: readonly NginxDirective[], t: Topology, ctx: FixContext): RuleResult {
  const wst = childrenNamed(tree, 'worker_shutdown_timeout')[0]?.args[0];
  const wstMs = wst === undefined ? undefined : nginxTimeMs(wst);
  if (wstMs === undefined) {
    return result(
      'worker-shutdown-timeout',
      'fail',
      wst === undefined ? 'worker_shutdown_timeout is not set: after a reload old workers keep WebSockets (and the old route) forever' : `worker_shutdown_timeout "${wst}" is not a time`,
      ctx,
    );
  }
  return wstMs !== t.nginx.workerShutdownTimeoutS * 1000
    ? result('worker-shutdown-timeout', 'warn', `worker_shutdown_timeout ${wst} differs from nginx.workerShutdownTimeoutS ${t.nginx.workerShutdownTimeoutS}`, ctx)
    : result('worker-shutdown-timeout', 'pass', wst ?? '', ctx);
}

/**
 * keepalive-above-alb-idle: behind the AWS load balancer, nginx's client keepalive_timeout must
 * exceed the balancer's idle timeout, so the balancer closes an idle connection first; nginx
 * closing it under a request the balancer is sending yields a 502 on /api/.
 */
function keepaliveRow(tree: readonly NginxDirective[], t: Topology, ctx: FixContext): RuleResult {
  const directive = childrenNamed(httpBlock(tree), 'keepalive_timeout')[0]?.args[0];
  // nginx's built-in default when the directive is absent.
  const value = directive ?? '75s';
  const ms = nginxTimeMs(value);
  if (ms === undefined) return result('keepalive-above-alb-idle', 'fail', `keepalive_timeout "${value}" is not a time`, ctx);
  if (t.target !== 'aws') return result('keepalive-above-alb-idle', 'pass', `keepalive_timeout ${value}; no load balancer in front on the ${t.target} target`, ctx);
  const idleS = t.aws.albIdleTimeoutS;
  return ms > idleS * 1000
    ? result('keepalive-above-alb-idle', 'pass', `keepalive_timeout ${value} > load balancer idle timeout ${idleS} s`, ctx)
    : result('keepalive-above-alb-idle', 'fail', `keepalive_timeout ${value} is not above the load balancer's ${idleS} s idle timeout (aws.albIdleTimeoutS): nginx closes idle connections the balancer still uses, and requests on them get 502`, ctx);
}

function routeRows(tree: readonly NginxDirective[], server: NginxDirective, t: Topology, ctx: FixContext): RuleResult[] {
  const out: RuleResult[] = [];
  // Routing: every client-facing /ws/ path goes to the upstream wsRoute names.
  // Local gateway replicas listen on consecutive ports; elsewhere one name reaches them all.
  const expectedWsPorts = t.wsRoute !== 'gateway' ? [t.backend.port] : t.target === 'local' ? gatewayReplicaPorts(t.gateway) : [t.gateway.port];
  const expectedWsPort = expectedWsPorts.join(', ');
  const wsWrong: string[] = [];
  let wsLabel = '';
  for (const uri of WS_PROBE_URIS) {
    const target = proxyTargetPorts(tree, matchLocation(server, uri));
    if (!target) wsWrong.push(`${uri} is not proxied`);
    else if (target.ports.length === 0 || target.ports.some((p) => !expectedWsPorts.includes(p))) wsWrong.push(`${uri} -> ${target.label}`);
    // A replica missing from the upstream runs but never gets a client.
    else if (expectedWsPorts.some((p) => !target.ports.includes(p))) wsWrong.push(`${uri} -> ${target.label}, without ${expectedWsPorts.filter((p) => !target.ports.includes(p)).join(', ')}`);
    else wsLabel = target.label;
  }
  out.push(
    wsWrong.length === 0
      ? result('ws-route', 'pass', `/ws/ -> ${wsLabel} (${t.wsRoute})`, ctx)
      : result('ws-route', 'fail', `wsRoute=${t.wsRoute} expects port ${expectedWsPort}: ${wsWrong.join('; ')}`, ctx),
  );
  const apiWrong: string[] = [];
  let apiLabel = '';
  for (const uri of API_PROBE_URIS) {
    const target = proxyTargetPorts(tree, matchLocation(server, uri));
    if (!target) apiWrong.push(`${uri} is not proxied`);
    else if (target.ports.length === 0 || target.ports.some((p) => p !== t.backend.port)) apiWrong.push(`${uri} -> ${target.label}`);
    else apiLabel = target.label;
  }
  out.push(
    apiWrong.length === 0
      ? result('api-route', 'pass', `/api/ -> ${apiLabel}`, ctx)
      : result('api-route', 'fail', `/api/ must reach the backend on port ${t.backend.port}: ${apiWrong.join('; ')}`, ctx),
  );
  for (const [id, uris] of Object.entries(BLOCKED_PROBE_URIS) as [keyof typeof BLOCKED_PROBE_URIS, readonly string[]][]) {
    const reachable = uris.filter((uri) => !isBlocking(matchLocation(server, uri)));
    out.push(reachable.length === 0 ? result(id, 'pass', `${uris.join(', ')} not proxied`, ctx) : result(id, 'fail', `${reachable.join(', ')} reach an upstream through nginx`, ctx));
  }
  return out;
}

function wsProxyRows(tree: readonly NginxDirective[], server: NginxDirective, t: Topology, ctx: FixContext): RuleResult[] {
  // WebSocket proxying details, read where nginx applies them: the /ws/ location plus inheritance.
  const chain = chainFor(tree, server, matchLocation(server, WS_PROBE_URIS[0]));
  const out: RuleResult[] = [];
  const missing: string[] = [];
  const version = effectiveDirectives(chain, 'proxy_http_version')[0]?.args[0];
  if (version !== '1.1') missing.push(`proxy_http_version is ${version ?? 'unset (1.0)'}`);
  const headers = new Map(effectiveDirectives(chain, 'proxy_set_header').map((d) => [(d.args[0] ?? '').toLowerCase(), d.args[1] ?? '']));
  if (headers.get('upgrade') !== '$http_upgrade') missing.push('proxy_set_header Upgrade $http_upgrade missing');
  const connection = headers.get('connection');
  if (connection === undefined) missing.push('proxy_set_header Connection missing');
  else if (connection.startsWith('$')) {
    const map = childrenNamed(httpBlock(tree), 'map').find((m) => m.args[1] === connection);
    if (!map) missing.push(`Connection uses ${connection} but no map defines it`);
    else if (map.args[0] !== '$http_upgrade') missing.push(`map ${connection} is keyed on ${map.args[0]}, not $http_upgrade`);
  }
  out.push(
    missing.length > 0
      ? result('ws-upgrade-headers', 'fail', missing.join('; '), ctx)
      : connection === 'upgrade'
        ? result('ws-upgrade-headers', 'warn', 'Connection is the literal "upgrade": plain HTTP requests to /ws/ keep the connection in upgrade mode', ctx)
        : result('ws-upgrade-headers', 'pass', `HTTP/1.1, Upgrade $http_upgrade, Connection ${connection}`, ctx),
  );
  const buffering = effectiveDirectives(chain, 'proxy_buffering')[0]?.args[0];
  out.push(buffering === 'off' ? result('ws-buffering-off', 'pass', 'proxy_buffering off', ctx) : result('ws-buffering-off', 'fail', `proxy_buffering is ${buffering ?? 'on (default)'} for /ws/`, ctx));
  const readTimeout = effectiveDirectives(chain, 'proxy_read_timeout')[0]?.args[0] ?? '60s';
  const readMs = nginxTimeMs(readTimeout);
  const hb = t.gateway.heartbeatMs;
  out.push(
    readMs === undefined
      ? result('ws-read-timeout', 'fail', `proxy_read_timeout "${readTimeout}" is not a time`, ctx)
      : readMs <= hb
        ? result('ws-read-timeout', 'fail', `/ws/ proxy_read_timeout ${readTimeout} is not above the ${hb / 1000} s heartbeat: idle sockets are cut`, ctx)
        : readMs < 2 * hb
          ? result('ws-read-timeout', 'warn', `/ws/ proxy_read_timeout ${readTimeout} is less than twice the ${hb / 1000} s heartbeat: one late pong cuts the socket`, ctx)
          : result('ws-read-timeout', 'pass', `${readTimeout} vs heartbeat ${hb / 1000} s`, ctx),
  );
  return out;
}

function checksumRow(input: StaticInput, ctx: FixContext): RuleResult {
  if (input.expectedChecksum === undefined) return result('config-checksum', 'skip', 'no expected checksum given', ctx);
  if (input.configChecksum === input.expectedChecksum) return result('config-checksum', 'pass', `checksum ${input.expectedChecksum}`, ctx);
  return result(
    'config-checksum',
    'fail',
    input.configChecksum === undefined ? 'the config has no checksum header' : `the config's header says ${input.configChecksum}, the topology is ${input.expectedChecksum}`,
    ctx,
  );
}

/**
 * The rows of the rules that read the parsed config. Returns why the rest could not be judged
 * (a config that does not parse, or has no server block) so each of them fails with that reason.
 */
function configRows(text: string, t: Topology, ctx: FixContext, add: (r: RuleResult) => void): { detail: string; fix: string } | undefined {
  let tree: readonly NginxDirective[];
  try {
    tree = parseNginxConfig(text);
  } catch (err) {
    return { detail: `config does not parse: ${(err as Error).message}`, fix: 'fix the nginx template' };
  }
  add(logRow(tree, ctx));
  add(workerShutdownRow(tree, t, ctx));
  add(keepaliveRow(tree, t, ctx));
  const server = serverForPort(tree, t.nginx.port);
  if (!server) return { detail: 'no server block in http { }', fix: 'render the config from nginx-templates/' };
  for (const r of [...routeRows(tree, server, t, ctx), ...wsProxyRows(tree, server, t, ctx)]) add(r);
  return undefined;
}

/** The rows of every rule that reads an nginx config, judged on `text` (rows say `rendered`). */
function nginxConfigRows(text: string, input: Omit<StaticInput, 'nginxConfig'>, ctx: FixContext): Map<RuleId, RuleResult> {
  const decided = new Map<RuleId, RuleResult>();
  const add = (r: RuleResult) => decided.set(r.id, r);
  add(checksumRow(input, ctx));
  const unjudged = configRows(text, input.topology, ctx, add);
  if (unjudged) for (const rule of rulesReading('nginx-config')) if (!decided.has(rule.id)) add(result(rule.id, 'fail', unjudged.detail, ctx, unjudged.fix));
  return decided;
}

/** Evaluates every static rule; nginx rules are skipped when the target renders no nginx config. */
export function evaluateStaticRules(input: StaticInput, fixContext: Omit<FixContext, 'topology'> = {}): RuleResult[] {
  const t = input.topology;
  const ctx: FixContext = { ...fixContext, topology: t };
  const decided = new Map<RuleId, RuleResult>();
  const add = (r: RuleResult) => decided.set(r.id, r);
  topologyRows(t, ctx).forEach(add);
  const configRules = rulesReading('nginx-config');
  if (input.nginxConfig === undefined) {
    for (const rule of configRules) add(result(rule.id, 'skip', `target ${t.target} has no nginx config`, ctx));
  } else {
    nginxConfigRows(input.nginxConfig, input, ctx).forEach(add);
  }
  return STATIC_RULES.map((rule) => {
    const r = decided.get(rule.id);
    if (!r) throw new Error(`static rule ${rule.id} produced no result`);
    return r;
  });
}

/**
 * The same nginx rules judged on the config the running nginx loaded. A rule that holds for the
 * rendered config but not for the running one means the running config drifted (a hand edit, a
 * stray deploy): its fix is to apply the stack file again. A rule the rendered config breaks too
 * keeps the rule's own fix, which repairs the source.
 */
export function evaluateRunningConfigRules(
  topology: Topology,
  running: { readonly text: string; readonly source: string } | { readonly error: string },
  rendered: readonly RuleResult[],
  fixContext: Omit<FixContext, 'topology'> = {},
): RuleResult[] {
  const ctx: FixContext = { ...fixContext, topology };
  const rules = rulesReading('nginx-config');
  // Unreadable: running-config-drift fails with the reason; one failure, not one per nginx rule.
  if ('error' in running) return rules.map((rule) => result(rule.id, 'skip', `running nginx config not readable (${running.error}): see running-config-drift`, ctx, undefined, 'running'));
  const rows = nginxConfigRows(running.text, { topology, configChecksum: readChecksumFromConfig(running.text), expectedChecksum: topologyChecksum(topology) }, ctx);
  const renderedOk = new Set(rendered.filter((r) => r.status === 'pass').map((r) => r.id));
  return rules.map((rule) => {
    const r = rows.get(rule.id)!;
    const broken = r.status === 'fail' || r.status === 'warn';
    const fix = broken ? (renderedOk.has(rule.id) ? applyFix(ctx) : r.fix) : '';
    return { ...r, against: 'running', detail: broken ? `running ${running.source}: ${r.detail}` : r.detail, fix };
  });
}
