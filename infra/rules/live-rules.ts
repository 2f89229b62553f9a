import type { Topology } from '../topology/index.js';
import { ruleById, rulesOfKind, type FixContext, type Rule, type RuleIdOfKind } from './catalog.js';
import { result, type RuleResult } from './result.js';

// Live architecture rules: pure predicates over what the check script observed on a running
// stack; ids, titles and fixes come from the rule table (catalog.ts). The script does the I/O
// and fills a LiveState; these functions only judge it, so each rule is tested on crafted
// observations.

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

/** Evaluates every live rule against the observations. */
export function evaluateLiveRules(topology: Topology, live: LiveState): RuleResult[] {
  const ctx: FixContext = { topology };
  const L = (id: LiveRuleId, status: RuleResult['status'], detail: string) => result(id, status, detail, ctx);
  const out: RuleResult[] = [];
  out.push(
    probeResult('running-config-checksum', live.runningChecksum, 'running nginx config', ctx, (running) =>
      live.renderedChecksum === undefined
        ? L('running-config-checksum', 'skip', 'no rendered checksum to compare with')
        : running === live.renderedChecksum
          ? L('running-config-checksum', 'pass', `running = rendered = ${running}`)
          : L(
              'running-config-checksum',
              'fail',
              running === undefined ? 'running config has no checksum header: it was edited by hand or not rendered by replyx' : `running ${running} != rendered ${live.renderedChecksum}: nginx runs a config from another topology`,
            ),
    ),
  );

  out.push(
    probeResult('ws-handshake', live.wsFirstFrame, '/ws/ handshake through nginx', ctx, (frame) => {
      const f = record(frame);
      if (f.type !== 'connected') return result('ws-handshake', 'fail', `first frame is not "connected": ${JSON.stringify(frame).slice(0, 120)}`, ctx, probeFix('ws-handshake', ctx));
      const server = typeof f.server === 'string' ? f.server : '(none)';
      const servedByGateway = server === 'ws-gateway';
      const ok = topology.wsRoute === 'gateway' ? servedByGateway : !servedByGateway;
      return ok
        ? L('ws-handshake', 'pass', `connected frame from ${server}${typeof f.instance === 'string' ? ` (${f.instance})` : ''}`)
        : L('ws-handshake', 'fail', `wsRoute=${topology.wsRoute} but /ws/ was answered by ${server}`);
    }),
  );

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

  out.push(
    probeResult('backend-workers', live.backendHealth, 'backend /health', ctx, (health) => {
      const workers = record(health).workers;
      return workers === topology.backend.workers
        ? L('backend-workers', 'pass', `${topology.backend.workers} workers`)
        : L('backend-workers', 'fail', `backend reports ${typeof workers === 'number' ? workers : 'no'} workers, stack file says ${topology.backend.workers}`);
    }),
  );
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
  out.push(
    probeResult('no-ws-token-in-log', live.accessLog, 'nginx access log', ctx, (lines) => {
      const leaks = lines.filter((l) => /\/ws\/\S*\?/.test(l) || /\/ws\/\S*(token|site_token)=/.test(l));
      return leaks.length === 0
        ? L('no-ws-token-in-log', 'pass', `${lines.length} lines, no /ws/ query string`)
        : L('no-ws-token-in-log', 'fail', `${leaks.length} /ws/ lines carry a query string (tokens!), e.g. ${leaks[0]!.slice(0, 100)}`);
    }),
  );
  return out;
}
