import type { Topology } from '../topology/index.js';
import { result, type RuleInfo, type RuleResult } from './result.js';

// Live architecture rules: pure predicates over what the check script observed on a running
// stack. The script does the I/O and fills a LiveState; these functions only judge it, so each
// rule is tested on crafted observations.

/** One observation: the value seen, or why it could not be seen. */
export type Probe<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: string };

/** Everything the live rules judge. Absent probes are reported as skipped. */
export interface LiveState {
  /** Checksum in the header of the config nginx is running (undefined: no header). */
  readonly runningChecksum?: Probe<string | undefined>;
  /** Checksum in the header of the config rendered from the topology now. */
  readonly renderedChecksum?: string;
  /** First frame received on a `/ws/` handshake made through nginx. */
  readonly wsFirstFrame?: Probe<unknown>;
  /** Body of the gateway's GET /api/debug/websocket/status. */
  readonly gatewayStatus?: Probe<unknown>;
  /** Body of the backend's GET /health. */
  readonly backendHealth?: Probe<unknown>;
  /** Redis PING answered. */
  readonly redis?: Probe<true>;
  /** Postgres SELECT 1 answered. */
  readonly postgres?: Probe<true>;
  /** GET /api/debug/websocket/status through nginx. */
  readonly debugThroughNginx?: Probe<{ readonly status: number; readonly body: string }>;
  /** Lines of nginx's access log (the tail is enough). */
  readonly accessLog?: Probe<readonly string[]>;
}

/** Every live rule. */
export const LIVE_RULES: readonly RuleInfo[] = [
  { id: 'running-config-checksum', title: 'nginx runs the config rendered from the topology', blocksDeploy: false },
  { id: 'ws-handshake', title: '/ws/ through nginx answered by the expected server', blocksDeploy: false },
  { id: 'gateway-workers', title: 'gateway reports one worker or the Redis broker', blocksDeploy: false },
  { id: 'backend-workers', title: 'backend runs its configured worker count', blocksDeploy: false },
  { id: 'redis', title: 'Redis answers', blocksDeploy: false },
  { id: 'postgres', title: 'Postgres answers', blocksDeploy: false },
  { id: 'debug-not-public', title: '/api/debug/ not reachable through nginx', blocksDeploy: false },
  { id: 'no-ws-token-in-log', title: 'no /ws/ query string in nginx access log', blocksDeploy: false },
];

const L = (id: string, status: RuleResult['status'], detail: string, fix = '') => result('live', id, status, detail, fix);

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

function probeResult<T>(id: string, probe: Probe<T> | undefined, what: string, fix: string, judge: (v: T) => RuleResult): RuleResult {
  if (probe === undefined) return L(id, 'skip', `${what} not probed`);
  if (!probe.ok) return L(id, 'fail', `${what}: ${probe.error}`, fix);
  return judge(probe.value);
}

/** Evaluates every live rule against the observations. */
export function evaluateLiveRules(topology: Topology, live: LiveState): RuleResult[] {
  const out: RuleResult[] = [];
  const stack = topology.target === 'local' ? 'npm run stack -- restart nginx' : 'npm run rollback -- --undo, or pulumi up';
  out.push(
    probeResult('running-config-checksum', live.runningChecksum, 'running nginx config', `check the nginx config path; ${stack}`, (running) =>
      live.renderedChecksum === undefined
        ? L('running-config-checksum', 'skip', 'no rendered checksum to compare with')
        : running === live.renderedChecksum
          ? L('running-config-checksum', 'pass', `running = rendered = ${running}`)
          : L(
              'running-config-checksum',
              'fail',
              running === undefined ? 'running config has no checksum header: it was edited by hand or not rendered by replyx' : `running ${running} != rendered ${live.renderedChecksum}: nginx runs a config from another topology`,
              `apply the stack file: ${topology.target === 'local' ? 'npm run stack -- restart nginx' : 'pulumi up'} (or npm run rollback -- --undo if a rollback was interrupted)`,
            ),
    ),
  );

  const wantServer = topology.wsRoute === 'gateway' ? 'ws-gateway' : 'backend';
  out.push(
    probeResult('ws-handshake', live.wsFirstFrame, '/ws/ handshake through nginx', `check that the ${wantServer} is up: npm run health`, (frame) => {
      const f = record(frame);
      if (f.type !== 'connected') return L('ws-handshake', 'fail', `first frame is not "connected": ${JSON.stringify(frame).slice(0, 120)}`, 'read the gateway log; npm run health');
      const server = typeof f.server === 'string' ? f.server : '(none)';
      const servedByGateway = server === 'ws-gateway';
      const ok = topology.wsRoute === 'gateway' ? servedByGateway : !servedByGateway;
      return ok
        ? L('ws-handshake', 'pass', `connected frame from ${server}${typeof f.instance === 'string' ? ` (${f.instance})` : ''}`)
        : L('ws-handshake', 'fail', `wsRoute=${topology.wsRoute} but /ws/ was answered by ${server}`, 'nginx runs a config with another route: npm run rollback -- --ws-to ' + topology.wsRoute);
    }),
  );

  if (topology.wsRoute === 'backend' && live.gatewayStatus && !live.gatewayStatus.ok) {
    out.push(L('gateway-workers', 'skip', `wsRoute=backend and the gateway does not answer (${live.gatewayStatus.error})`));
  } else {
    out.push(
      probeResult('gateway-workers', live.gatewayStatus, 'gateway status', 'start the gateway (npm run stack -- restart gateway) and check DEBUG_TOKEN', (status) => {
        const s = record(status);
        const workers = typeof s.workers === 'number' ? s.workers : undefined;
        const broker = brokerKind(status);
        if (workers === 1 || broker === 'redis') return L('gateway-workers', 'pass', `workers ${workers ?? '?'}, broker ${broker ?? '?'}`);
        return L(
          'gateway-workers',
          'fail',
          `gateway reports workers ${workers ?? 'unknown'} and broker ${broker ?? 'unknown'}: connections split across workers without a shared broker desync`,
          'run the gateway with 1 worker or BROKER=redis',
        );
      }),
    );
  }

  out.push(
    probeResult('backend-workers', live.backendHealth, 'backend /health', 'start the backend: npm run stack -- restart backend', (health) => {
      const workers = record(health).workers;
      return workers === topology.backend.workers
        ? L('backend-workers', 'pass', `${topology.backend.workers} workers`)
        : L(
            'backend-workers',
            'fail',
            `backend reports ${typeof workers === 'number' ? workers : 'no'} workers, stack file says ${topology.backend.workers}`,
            `restart the backend so it picks up backend.workers (${topology.target === 'local' ? 'npm run stack -- restart backend' : 'pulumi up'})`,
          );
    }),
  );
  out.push(probeResult('redis', live.redis, 'Redis', 'see runbooks/redis-outage.md', () => L('redis', 'pass', 'PONG')));
  out.push(probeResult('postgres', live.postgres, 'Postgres', `start Postgres (${topology.target === 'local' ? 'npm start' : 'check the postgres container'})`, () => L('postgres', 'pass', 'SELECT 1 ok')));
  out.push(
    probeResult('debug-not-public', live.debugThroughNginx, 'GET /api/debug/ through nginx', 'check that nginx is up', ({ status, body }) => {
      let fromUpstream = false;
      try {
        JSON.parse(body);
        fromUpstream = true;
      } catch {
        // nginx's own error pages are HTML: the request never left nginx.
      }
      return status >= 400 && !fromUpstream
        ? L('debug-not-public', 'pass', `nginx answers ${status}`)
        : L('debug-not-public', 'fail', `GET /api/debug/websocket/status through nginx got ${status}${fromUpstream ? ' from an upstream' : ''}`, 'render nginx from the topology (location /api/debug/ { return 404; })');
    }),
  );
  out.push(
    probeResult('no-ws-token-in-log', live.accessLog, 'nginx access log', 'check the access_log path', (lines) => {
      const leaks = lines.filter((l) => /\/ws\/\S*\?/.test(l) || /\/ws\/\S*(token|site_token)=/.test(l));
      return leaks.length === 0
        ? L('no-ws-token-in-log', 'pass', `${lines.length} lines, no /ws/ query string`)
        : L('no-ws-token-in-log', 'fail', `${leaks.length} /ws/ lines carry a query string (tokens!), e.g. ${leaks[0]!.slice(0, 100)}`, 'log /ws/ with $uri only (render nginx from the topology), then rotate the log and the leaked tokens');
    }),
  );
  return out;
}
