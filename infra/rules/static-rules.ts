import type { Topology } from '../topology/index.js';
import {
  childrenNamed,
  effectiveDirectives,
  httpBlock,
  matchLocation,
  nginxTimeMs,
  parseNginxConfig,
  resolveProxyPass,
  serverForPort,
  type NginxDirective,
} from './nginx-config.js';
import { result, type RuleInfo, type RuleResult } from './result.js';

// Static architecture rules: pure predicates over the topology and the nginx config rendered
// from it. Every rule reads the config through the parsed tree and the URIs clients really
// use, so a template that routes /ws/ somewhere else is caught whatever its layout.

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
export const BLOCKED_PROBE_URIS = {
  'debug-blocked': ['/api/debug/websocket/status', '/api/debug/websocket/sync'],
  'internal-blocked': ['/internal/publish'],
} as const;

/** Every static rule: its id, title and whether it blocks a deploy. */
export const STATIC_RULES: readonly RuleInfo[] = [
  { id: 'single-gateway-or-broker', title: 'one gateway process, or the Redis broker', blocksDeploy: true },
  { id: 'desync-risk', title: '/ws/ on the backend only with one worker', blocksDeploy: false },
  { id: 'heartbeat-vs-timeouts', title: 'heartbeat shorter than nginx/ALB idle timeouts', blocksDeploy: true },
  { id: 'config-checksum', title: 'rendered config carries the topology checksum', blocksDeploy: true },
  { id: 'ws-route', title: '/ws/ routed per wsRoute', blocksDeploy: true },
  { id: 'api-route', title: '/api/ routed to the backend', blocksDeploy: true },
  { id: 'ws-upgrade-headers', title: 'HTTP/1.1 + Upgrade/Connection via map', blocksDeploy: true },
  { id: 'ws-buffering-off', title: 'proxy_buffering off for /ws/', blocksDeploy: true },
  { id: 'ws-read-timeout', title: '/ws/ proxy_read_timeout well above the heartbeat', blocksDeploy: true },
  { id: 'debug-blocked', title: '/api/debug/ not reachable through nginx', blocksDeploy: true },
  { id: 'internal-blocked', title: '/internal/ not reachable through nginx', blocksDeploy: true },
  { id: 'ws-log-no-query', title: '/ws/ access log without query strings', blocksDeploy: true },
  { id: 'worker-shutdown-timeout', title: 'worker_shutdown_timeout set', blocksDeploy: true },
];

const S = (id: string, status: RuleResult['status'], detail: string, fix = '') => result('static', id, status, detail, fix);

function topologyRules(t: Topology): RuleResult[] {
  const out: RuleResult[] = [];
  out.push(
    t.gateway.replicas === 1 || t.gateway.broker === 'redis'
      ? S('single-gateway-or-broker', 'pass', t.gateway.replicas === 1 ? `1 gateway process (broker ${t.gateway.broker})` : `${t.gateway.replicas} gateway processes share the Redis broker`)
      : S('single-gateway-or-broker', 'fail', `${t.gateway.replicas} gateway processes with broker "${t.gateway.broker}": events published to one never reach clients of another`, 'set gateway.broker: redis or gateway.replicas: 1'),
  );
  out.push(
    t.wsRoute === 'backend' && t.backend.workers > 1
      ? S('desync-risk', 'fail', `desync risk: /ws/ is served by the backend with ${t.backend.workers} workers, each holding its own connections`, 'npm run rollback -- --backend-workers 1 (or --ws-to gateway)')
      : S('desync-risk', 'pass', t.wsRoute === 'gateway' ? '/ws/ served by the gateway' : '/ws/ served by a single backend worker'),
  );
  const heartbeatS = t.gateway.heartbeatMs / 1000;
  const problems: string[] = [];
  if (t.gateway.heartbeatMs >= t.nginx.proxyReadTimeoutS * 1000) problems.push(`nginx.proxyReadTimeoutS ${t.nginx.proxyReadTimeoutS} s`);
  if (t.target === 'aws' && t.gateway.heartbeatMs >= t.aws.albIdleTimeoutS * 1000) problems.push(`aws.albIdleTimeoutS ${t.aws.albIdleTimeoutS} s`);
  out.push(
    problems.length === 0
      ? S('heartbeat-vs-timeouts', 'pass', `heartbeat ${heartbeatS} s < read timeout ${t.nginx.proxyReadTimeoutS} s${t.target === 'aws' ? `, ALB idle ${t.aws.albIdleTimeoutS} s` : ''}`)
      : S('heartbeat-vs-timeouts', 'fail', `heartbeat ${heartbeatS} s is not shorter than ${problems.join(' and ')}: idle WebSockets get cut`, `lower gateway.heartbeatMs below ${Math.min(t.nginx.proxyReadTimeoutS, t.target === 'aws' ? t.aws.albIdleTimeoutS : Infinity) * 1000}`),
  );
  return out;
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

const QUERY_VARIABLES = /\$(request|request_uri|args|query_string|arg_[A-Za-z0-9_]+)\b/;

function configRules(input: StaticInput, text: string): RuleResult[] {
  const t = input.topology;
  let tree: readonly NginxDirective[];
  try {
    tree = parseNginxConfig(text);
  } catch (err) {
    const ids = STATIC_RULES.map((r) => r.id).filter((id) => !['single-gateway-or-broker', 'desync-risk', 'heartbeat-vs-timeouts', 'config-checksum'].includes(id));
    return ids.map((id) => S(id, 'fail', `config does not parse: ${(err as Error).message}`, 'fix the nginx template'));
  }
  const out: RuleResult[] = [];
  const server = serverForPort(tree, t.nginx.port);
  if (!server) {
    return ['ws-route', 'api-route'].map((id) => S(id, 'fail', 'no server block in http { }', 'render the config from nginx-templates/'));
  }

  // Routing: every client-facing /ws/ path goes to the upstream wsRoute names.
  const expectedWsPort = t.wsRoute === 'gateway' ? t.gateway.port : t.backend.port;
  const wsWrong: string[] = [];
  let wsLabel = '';
  for (const uri of WS_PROBE_URIS) {
    const target = proxyTargetPorts(tree, matchLocation(server, uri));
    if (!target) wsWrong.push(`${uri} is not proxied`);
    else if (target.ports.length === 0 || target.ports.some((p) => p !== expectedWsPort)) wsWrong.push(`${uri} -> ${target.label}`);
    else wsLabel = target.label;
  }
  out.push(
    wsWrong.length === 0
      ? S('ws-route', 'pass', `/ws/ -> ${wsLabel} (${t.wsRoute})`)
      : S('ws-route', 'fail', `wsRoute=${t.wsRoute} expects port ${expectedWsPort}: ${wsWrong.join('; ')}`, 're-render nginx from the topology (npm run rollback -- --ws-to ' + t.wsRoute + ')'),
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
      ? S('api-route', 'pass', `/api/ -> ${apiLabel}`)
      : S('api-route', 'fail', `/api/ must reach the backend on port ${t.backend.port}: ${apiWrong.join('; ')}`, 'fix the /api/ location in nginx-templates/'),
  );

  // WebSocket proxying details, read where nginx applies them: the /ws/ location plus inheritance.
  const wsLocation = matchLocation(server, WS_PROBE_URIS[0]);
  const chain = chainFor(tree, server, wsLocation);
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
      ? S('ws-upgrade-headers', 'fail', missing.join('; '), 'in location /ws/: proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $connection_upgrade (map $http_upgrade)')
      : connection === 'upgrade'
        ? S('ws-upgrade-headers', 'warn', 'Connection is the literal "upgrade": plain HTTP requests to /ws/ keep the connection in upgrade mode', 'use map $http_upgrade $connection_upgrade { default upgrade; "" close; }')
        : S('ws-upgrade-headers', 'pass', `HTTP/1.1, Upgrade $http_upgrade, Connection ${connection}`),
  );
  const buffering = effectiveDirectives(chain, 'proxy_buffering')[0]?.args[0];
  out.push(
    buffering === 'off'
      ? S('ws-buffering-off', 'pass', 'proxy_buffering off')
      : S('ws-buffering-off', 'fail', `proxy_buffering is ${buffering ?? 'on (default)'} for /ws/`, 'add proxy_buffering off; to location /ws/'),
  );
  const readTimeout = effectiveDirectives(chain, 'proxy_read_timeout')[0]?.args[0] ?? '60s';
  const readMs = nginxTimeMs(readTimeout);
  const hb = t.gateway.heartbeatMs;
  out.push(
    readMs === undefined
      ? S('ws-read-timeout', 'fail', `proxy_read_timeout "${readTimeout}" is not a time`, 'render the config from the topology')
      : readMs <= hb
        ? S('ws-read-timeout', 'fail', `/ws/ proxy_read_timeout ${readTimeout} is not above the ${hb / 1000} s heartbeat: idle sockets are cut`, `set nginx.proxyReadTimeoutS to at least ${Math.ceil((2 * hb) / 1000)}`)
        : readMs < 2 * hb
          ? S('ws-read-timeout', 'warn', `/ws/ proxy_read_timeout ${readTimeout} is less than twice the ${hb / 1000} s heartbeat: one late pong cuts the socket`, `set nginx.proxyReadTimeoutS to at least ${Math.ceil((2 * hb) / 1000)}`)
          : S('ws-read-timeout', 'pass', `${readTimeout} vs heartbeat ${hb / 1000} s`),
  );

  for (const [id, uris] of Object.entries(BLOCKED_PROBE_URIS)) {
    const reachable = uris.filter((uri) => !isBlocking(matchLocation(server, uri)));
    out.push(
      reachable.length === 0
        ? S(id, 'pass', `${uris.join(', ')} not proxied`)
        : S(id, 'fail', `${reachable.join(', ')} reach an upstream through nginx`, `add location ${id === 'debug-blocked' ? '/api/debug/' : '/internal/'} { return 404; } before the proxying locations`),
    );
  }

  // nginx logs to logs/access.log in "combined" (which has $request, i.e. the query) unless told otherwise.
  const logs = effectiveDirectives(chain, 'access_log');
  const formats = new Map(childrenNamed(httpBlock(tree), 'log_format').map((d) => [d.args[0] ?? '', d.args.slice(1).filter((a) => !a.startsWith('escape=')).join(' ')]));
  const leaks: string[] = [];
  if (logs.length === 0) leaks.push('no access_log for /ws/: nginx uses the "combined" format, which logs the query string');
  for (const log of logs) {
    if (log.args[0] === 'off') continue;
    const name = log.args[1] ?? 'combined';
    const format = name === 'combined' ? '$request' : formats.get(name);
    if (format === undefined) leaks.push(`access_log uses undefined format "${name}"`);
    else if (QUERY_VARIABLES.test(format)) leaks.push(`access_log format "${name}" contains ${QUERY_VARIABLES.exec(format)![0]}`);
  }
  out.push(
    leaks.length === 0
      ? S('ws-log-no-query', 'pass', logs.every((l) => l.args[0] === 'off') ? 'access_log off for /ws/' : `format ${logs.map((l) => l.args[1] ?? 'combined').join(', ')} logs $uri only`)
      : S('ws-log-no-query', 'fail', `/ws/ tokens can reach the access log: ${leaks.join('; ')}`, 'log /ws/ with a log_format using $uri (no $request/$args), or access_log off'),
  );

  const wst = childrenNamed(tree, 'worker_shutdown_timeout')[0]?.args[0];
  const wstMs = wst === undefined ? undefined : nginxTimeMs(wst);
  out.push(
    wstMs === undefined
      ? S('worker-shutdown-timeout', 'fail', wst === undefined ? 'worker_shutdown_timeout is not set: after a reload old workers keep WebSockets (and the old route) forever' : `worker_shutdown_timeout "${wst}" is not a time`, 'render the config from the topology (nginx.workerShutdownTimeoutS)')
      : wstMs !== t.nginx.workerShutdownTimeoutS * 1000
        ? S('worker-shutdown-timeout', 'warn', `worker_shutdown_timeout ${wst} differs from nginx.workerShutdownTimeoutS ${t.nginx.workerShutdownTimeoutS}`, 're-render the config from the topology')
        : S('worker-shutdown-timeout', 'pass', wst ?? ''),
  );
  return out;
}

/** Evaluates every static rule; nginx rules are skipped when the target renders no nginx config. */
export function evaluateStaticRules(input: StaticInput): RuleResult[] {
  const out = topologyRules(input.topology);
  if (input.nginxConfig === undefined) {
    out.push(S('config-checksum', 'skip', `target ${input.topology.target} has no nginx config`));
    for (const r of STATIC_RULES.slice(4)) out.push(S(r.id, 'skip', `target ${input.topology.target} has no nginx config`));
    return out;
  }
  if (input.expectedChecksum === undefined) out.push(S('config-checksum', 'skip', 'no expected checksum given'));
  else if (input.configChecksum === input.expectedChecksum) out.push(S('config-checksum', 'pass', `checksum ${input.expectedChecksum}`));
  else
    out.push(
      S(
        'config-checksum',
        'fail',
        input.configChecksum === undefined ? 'rendered config has no checksum header' : `rendered config says ${input.configChecksum}, topology is ${input.expectedChecksum}`,
        'render the config with renderNginxConfig from this topology',
      ),
    );
  out.push(...configRules(input, input.nginxConfig));
  return out;
}
