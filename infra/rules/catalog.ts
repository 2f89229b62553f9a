import { ALB_KEEPALIVE_MARGIN_S, dnsStalenessS, fargateStopCapOverruns, FARGATE_MAX_STOP_TIMEOUT_S, gatewayDrainS, STOP_MARGIN_S } from '../render/deploy-timing.js';
import { TOKEN_CARRYING_VARIABLES } from '../render/nginx-reader.js';
import type { Topology } from '../topology/schema.js';
import { idleTimeoutsOf, portClashes } from './topology-rules.js';

// The one table of architecture rules. Topology validation, the static and live rules of
// `npm run check`, the Pulumi program's fail-fast and the CrossGuard policy pack take each rule's
// id, title, reach and fix from here, and pick the rules they run by what a rule reads, never by
// position. docs/operations.md lists every rule (a test keeps it in step).

/** What a rule reads: the stack topology alone, an nginx config, or the running system. */
export type RuleReads = 'topology' | 'nginx-config' | 'live';

/**
 * Where a rule shows up. `topology`: only when a stack file is validated (every command and
 * `pulumi up`, before anything starts). `static`: also as a row of `npm run check` and in the
 * program's fail-fast. `live`: as a row of `npm run check`, judged on the running stack.
 */
export type RuleKind = 'topology' | 'static' | 'live';

/**
 * What a rule is judged against: the topology in the stack file, the nginx config rendered from
 * it, the resources a deploy declares (the policy pack), or the running system.
 */
export type RuleSubject = 'stack-file' | 'rendered' | 'declared' | 'running';

/** What a fix needs to name the values and commands that repair a rule. */
export interface FixContext {
  readonly topology: Topology;
  /**
   * The stack the check ran on (`Pulumi.<stack>.yaml`): every printed command names it, so a
   * fix copied as printed acts on that stack and not on the default one.
   */
  readonly stack?: string;
  /** Extra flags that select the stack (`--project-dir DIR`, `--state-dir DIR`), when the check was given them. */
  readonly selector?: readonly string[];
}

/** One rule of the table. */
export interface RuleDefinition {
  /** Stable kebab-case id: the check's row, the validation issue's `rule`, the policy's name. */
  readonly id: string;
  readonly title: string;
  readonly kind: RuleKind;
  readonly reads: RuleReads;
  readonly against: readonly RuleSubject[];
  /**
   * A failure stops `pulumi up` (and, for topology rules, is a validation error). False for
   * states an operator may choose on purpose for a while (a rollback to the backend's
   * WebSockets): the check fails loudly, validation only warns, so a rollback persists.
   */
  readonly blocksDeploy: boolean;
  /** What to do when the rule fails. */
  readonly fix: (ctx: FixContext) => string;
  /** Live rules: what to do when the observation itself failed (the service did not answer). */
  readonly probeFix?: (ctx: FixContext) => string;
}

// The commands fixes print, built in one place so that every fix names its stack the same way:
// `--stack NAME` (and the directories the check was pointed at), so it is complete as printed.
const selectorOf = (ctx: FixContext): string[] => [...(ctx.stack !== undefined ? ['--stack', ctx.stack] : []), ...(ctx.selector ?? [])];
const stackCommand = (ctx: FixContext, ...args: string[]) => ['npm', 'run', 'stack', '--', ...args, ...selectorOf(ctx)].join(' ');
const rollbackCommand = (ctx: FixContext, ...args: string[]) => ['npm', 'run', 'rollback', '--', ...args, ...selectorOf(ctx)].join(' ');
const deployCommand = (ctx: FixContext) => ['pulumi', 'up', ...(ctx.stack !== undefined ? ['--stack', ctx.stack] : [])].join(' ');
/**
 * Brings the running stack back to its stack file: `stack apply` for a local stack (re-render,
 * validate, swap, reload nginx; start or restart services whose loaded settings drifted), else a
 * deploy, which does the same for containers and tasks.
 */
const applyCommand = (ctx: FixContext) => (ctx.topology.target === 'local' ? stackCommand(ctx, 'apply') : deployCommand(ctx));
/** Restarts a service so it reads the stack file again: the local process, else a deploy. */
const restartCommand = (ctx: FixContext, service: RestartableService) =>
  ctx.topology.target === 'local' ? stackCommand(ctx, 'restart', service) : deployCommand(ctx);

/** A change to the stack file or a template, then the command that rolls it out: complete as printed. */
const thenApply = (ctx: FixContext, change: string) => `${change}, then ${applyCommand(ctx)}`;

/** The command that brings a running stack back to its stack file (`npm run stack -- apply --stack NAME`, or `pulumi up --stack NAME`). */
export function applyFix(ctx: FixContext): string {
  return applyCommand(ctx);
}

/** A service `stack restart` takes by name: a stack service, or one gateway replica (`gateway-2`). */
export type RestartableService = 'nginx' | 'backend' | 'gateway' | 'redis' | 'postgres' | `gateway-${number}`;

/** The command that restarts one service (or one gateway replica) of the stack (local), or redeploys it. */
export function restartFix(ctx: FixContext, service: RestartableService): string {
  return restartCommand(ctx, service);
}

const RULE_TABLE = [
  {
    id: 'single-gateway-or-broker',
    title: 'one gateway process, or the Redis broker',
    kind: 'static',
    reads: 'topology',
    against: ['stack-file', 'declared'],
    blocksDeploy: true,
    fix: (ctx) => thenApply(ctx, 'set gateway.broker to "redis" or gateway.replicas to 1 in the stack file'),
  },
  {
    id: 'desync-risk',
    title: '/ws/ on the backend only with one worker',
    kind: 'static',
    reads: 'topology',
    against: ['stack-file', 'declared'],
    blocksDeploy: false,
    fix: (ctx) => `${rollbackCommand(ctx, '--backend-workers', '1')} (or --ws-to gateway)`,
  },
  {
    id: 'heartbeat-vs-timeouts',
    title: 'heartbeat shorter than nginx/ALB idle timeouts',
    kind: 'static',
    reads: 'topology',
    against: ['stack-file', 'declared'],
    blocksDeploy: true,
    fix: (ctx) => {
      const timeouts = idleTimeoutsOf(ctx.topology);
      return thenApply(ctx, `set gateway.heartbeatMs below ${Math.min(...timeouts.map((t) => t.seconds)) * 1000} or raise ${timeouts.map((t) => t.setting).join(' and ')} in the stack file`);
    },
  },
  {
    id: 'legacy-widget-auth-off',
    title: 'widgets need a session token (gateway.legacyWidgetAuth off)',
    kind: 'static',
    reads: 'topology',
    against: ['stack-file'],
    // A migration window is a choice an operator makes for a while: validation warns, the check fails.
    blocksDeploy: false,
    fix: () => 'move every widget to POST /api/widget/sessions, then set gateway.legacyWidgetAuth to false (docs/security.md#the-legacy-widget-handshake)',
  },
  {
    id: 'aws-https',
    title: 'the AWS load balancer serves HTTPS',
    kind: 'static',
    reads: 'topology',
    against: ['stack-file'],
    // A first deploy may precede the domain and its certificate: `pulumi up` warns, the check fails.
    blocksDeploy: false,
    fix: () => 'request an ACM certificate for your domain and set aws.certificateArn (HTTP then redirects to HTTPS)',
  },
  {
    id: 'stop-timeout-covers-drain',
    title: 'the gateway and nginx get their whole drain before SIGKILL',
    kind: 'static',
    reads: 'topology',
    against: ['stack-file', 'declared'],
    blocksDeploy: true,
    fix: (ctx) => {
      const overruns = fargateStopCapOverruns(ctx.topology);
      const change =
        overruns.length > 0
          ? `set ${overruns.map((o) => `${o.path} to ${o.largest} or less`).join(' and ')}`
          : `keep gateway.drainWindowMs at ${(FARGATE_MAX_STOP_TIMEOUT_S - STOP_MARGIN_S) * 1000} or less and nginx.workerShutdownTimeoutS at ${FARGATE_MAX_STOP_TIMEOUT_S - STOP_MARGIN_S} or less on aws (Fargate stops a container after ${FARGATE_MAX_STOP_TIMEOUT_S} s)`;
      return thenApply(ctx, `${change} in the stack file`);
    },
  },
  {
    id: 'nginx-shutdown-covers-drain',
    title: 'after a reload nginx keeps WebSockets for the whole gateway drain',
    kind: 'static',
    reads: 'topology',
    against: ['stack-file'],
    // A short worker_shutdown_timeout only makes a route rollback rougher: validation warns, the check fails.
    blocksDeploy: false,
    fix: (ctx) => thenApply(ctx, `set nginx.workerShutdownTimeoutS to at least ${gatewayDrainS(ctx.topology)} (the drain window in seconds) in the stack file`),
  },
  {
    id: 'dns-staleness-within-drain',
    title: 'nginx stops routing to a draining gateway within its drain window',
    kind: 'static',
    reads: 'topology',
    against: ['stack-file'],
    blocksDeploy: false,
    fix: (ctx) => thenApply(ctx, `set gateway.drainWindowMs to at least ${dnsStalenessS(ctx.topology.target) * 1000} in the stack file`),
  },
  {
    id: 'config-checksum',
    title: 'rendered config carries the topology checksum',
    kind: 'static',
    reads: 'nginx-config',
    against: ['rendered', 'running', 'declared'],
    blocksDeploy: true,
    fix: (ctx) => `render the config from this topology: ${applyCommand(ctx)}`,
  },
  {
    id: 'ws-route',
    title: '/ws/ routed per wsRoute',
    kind: 'static',
    reads: 'nginx-config',
    against: ['rendered', 'running', 'declared'],
    blocksDeploy: true,
    fix: (ctx) => thenApply(ctx, `fix the /ws/ location in nginx-templates/ (it must reach the ${ctx.topology.wsRoute} on port ${ctx.topology.wsRoute === 'gateway' ? ctx.topology.gateway.port : ctx.topology.backend.port})`),
  },
  {
    id: 'api-route',
    title: '/api/ routed to the backend',
    kind: 'static',
    reads: 'nginx-config',
    against: ['rendered', 'running', 'declared'],
    blocksDeploy: true,
    fix: (ctx) => thenApply(ctx, 'fix the /api/ location in nginx-templates/'),
  },
  {
    id: 'ws-upgrade-headers',
    title: 'HTTP/1.1 + Upgrade/Connection via map',
    kind: 'static',
    reads: 'nginx-config',
    against: ['rendered', 'running', 'declared'],
    blocksDeploy: true,
    fix: (ctx) =>
      thenApply(ctx, 'in location /ws/ of nginx-templates/: proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $connection_upgrade, from map $http_upgrade $connection_upgrade { default upgrade; "" close; }'),
  },
  {
    id: 'ws-buffering-off',
    title: 'proxy_buffering off for /ws/',
    kind: 'static',
    reads: 'nginx-config',
    against: ['rendered', 'running', 'declared'],
    blocksDeploy: true,
    fix: (ctx) => thenApply(ctx, 'add proxy_buffering off; to location /ws/ in nginx-templates/'),
  },
  {
    id: 'ws-read-timeout',
    title: '/ws/ proxy_read_timeout well above the heartbeat',
    kind: 'static',
    reads: 'nginx-config',
    against: ['rendered', 'running', 'declared'],
    blocksDeploy: true,
    fix: (ctx) => thenApply(ctx, `set nginx.proxyReadTimeoutS to at least ${Math.ceil((2 * ctx.topology.gateway.heartbeatMs) / 1000)} in the stack file`),
  },
  {
    id: 'debug-blocked',
    title: '/api/debug/ not reachable through nginx',
    kind: 'static',
    reads: 'nginx-config',
    against: ['rendered', 'running', 'declared'],
    blocksDeploy: true,
    fix: (ctx) => thenApply(ctx, 'add location ^~ /api/debug/ { return 404; } to nginx-templates/'),
  },
  {
    id: 'internal-blocked',
    title: '/internal/ not reachable through nginx',
    kind: 'static',
    reads: 'nginx-config',
    against: ['rendered', 'running', 'declared'],
    blocksDeploy: true,
    fix: (ctx) => thenApply(ctx, 'add location ^~ /internal/ { return 404; } to nginx-templates/'),
  },
  {
    id: 'metrics-blocked',
    title: '/metrics not reachable through nginx',
    kind: 'static',
    reads: 'nginx-config',
    against: ['rendered', 'running', 'declared'],
    blocksDeploy: true,
    fix: (ctx) => thenApply(ctx, 'add location = /metrics { return 404; } to nginx-templates/ (Prometheus scrapes the services directly)'),
  },
  {
    id: 'ws-log-no-query',
    title: 'no access log format carries query strings (tokens)',
    kind: 'static',
    reads: 'nginx-config',
    against: ['rendered', 'running', 'declared'],
    blocksDeploy: true,
    fix: (ctx) => thenApply(ctx, `give every access_log in nginx-templates/ a log_format that logs $uri and none of ${TOKEN_CARRYING_VARIABLES.join(' ')} (or access_log off)`),
  },
  {
    id: 'worker-shutdown-timeout',
    title: 'worker_shutdown_timeout set',
    kind: 'static',
    reads: 'nginx-config',
    against: ['rendered', 'running', 'declared'],
    blocksDeploy: true,
    fix: (ctx) => thenApply(ctx, 'set worker_shutdown_timeout in nginx-templates/ from nginx.workerShutdownTimeoutS'),
  },
  {
    id: 'keepalive-above-alb-idle',
    title: 'nginx keeps idle client connections longer than the load balancer',
    kind: 'static',
    reads: 'nginx-config',
    against: ['rendered', 'running', 'declared'],
    blocksDeploy: true,
    fix: (ctx) =>
      thenApply(ctx, `render keepalive_timeout in nginx-templates/ from the plan (aws.albIdleTimeoutS + ${ALB_KEEPALIVE_MARGIN_S} s = ${ctx.topology.aws.albIdleTimeoutS + ALB_KEEPALIVE_MARGIN_S} s on aws)`),
  },
  {
    id: 'running-config-drift',
    title: 'nginx runs the config rendered from the stack file',
    kind: 'live',
    reads: 'live',
    against: ['running'],
    blocksDeploy: false,
    fix: (ctx) => applyCommand(ctx),
    probeFix: (ctx) => `nginx is down or its config cannot be read: ${applyCommand(ctx)}`,
  },
  {
    id: 'services-running',
    title: 'every service runs and listens on its port',
    kind: 'live',
    reads: 'live',
    against: ['running'],
    blocksDeploy: false,
    fix: (ctx) => applyCommand(ctx),
  },
  {
    id: 'service-settings',
    title: 'each service runs with the settings rendered from the stack file',
    kind: 'live',
    reads: 'live',
    against: ['running'],
    blocksDeploy: false,
    fix: (ctx) => applyCommand(ctx),
  },
  {
    id: 'ws-handshake',
    title: '/ws/ through nginx answered by the expected server',
    kind: 'live',
    reads: 'live',
    against: ['running'],
    blocksDeploy: false,
    fix: (ctx) => applyCommand(ctx),
    probeFix: (ctx) => applyCommand(ctx),
  },
  {
    id: 'gateway-workers',
    title: 'gateway reports one worker or the Redis broker',
    kind: 'live',
    reads: 'live',
    against: ['running', 'declared'],
    blocksDeploy: true,
    fix: (ctx) => `run one worker per gateway process (scale with gateway.replicas and BROKER=redis): ${applyCommand(ctx)}`,
    probeFix: (ctx) => restartCommand(ctx, 'gateway'),
  },
  {
    id: 'backend-workers',
    title: 'backend runs its configured worker count',
    kind: 'live',
    reads: 'live',
    against: ['running', 'declared'],
    blocksDeploy: true,
    fix: (ctx) => applyCommand(ctx),
    probeFix: (ctx) => restartCommand(ctx, 'backend'),
  },
  {
    id: 'redis',
    title: 'Redis answers',
    kind: 'live',
    reads: 'live',
    against: ['running'],
    blocksDeploy: false,
    fix: (ctx) => `${restartCommand(ctx, 'redis')} (runbooks/redis-outage.md)`,
  },
  {
    id: 'postgres',
    title: 'Postgres answers',
    kind: 'live',
    reads: 'live',
    against: ['running'],
    blocksDeploy: false,
    fix: (ctx) => restartCommand(ctx, 'postgres'),
  },
  {
    id: 'debug-not-public',
    title: '/api/debug/ not reachable through nginx',
    kind: 'live',
    reads: 'live',
    against: ['running'],
    blocksDeploy: false,
    fix: (ctx) => applyCommand(ctx),
    probeFix: (ctx) => `nginx does not answer: ${applyCommand(ctx)}`,
  },
  {
    id: 'no-secrets-in-logs',
    title: 'no token or secret in any service log',
    kind: 'live',
    reads: 'live',
    against: ['running'],
    blocksDeploy: false,
    fix: (ctx) =>
      ctx.topology.target === 'local'
        ? `${stackCommand(ctx, 'redact-logs')} (then rotate the leaked credentials)`
        : 'rotate the leaked credentials; the lines stay in the container log (docker logs / CloudWatch) until the container is replaced or the log expires',
    probeFix: () => 'check that the log files are readable by this user',
  },
  {
    id: 'unique-ports',
    title: 'every service on a port of its own',
    kind: 'topology',
    reads: 'topology',
    against: ['stack-file'],
    blocksDeploy: true,
    fix: ({ topology }) => {
      const moves = portClashes(topology).flatMap((c) => c.paths.slice(1));
      return `give ${moves.length > 0 ? moves.join(', ') : 'each service'} a port of its own`;
    },
  },
  {
    id: 'aws-vpc-subnets',
    title: 'an existing VPC comes with its subnets',
    kind: 'topology',
    reads: 'topology',
    against: ['stack-file'],
    blocksDeploy: true,
    fix: () => 'set aws.vpcId together with aws.publicSubnetIds and aws.privateSubnetIds, or none of them',
  },
  {
    id: 'backend-kind',
    title: 'the FastAPI example backend runs locally, or from an image',
    kind: 'topology',
    reads: 'topology',
    against: ['stack-file'],
    blocksDeploy: true,
    fix: () => 'set backend.kind: node, or set backend.image on the docker and aws targets',
  },
] as const satisfies readonly RuleDefinition[];

type TableRow = (typeof RULE_TABLE)[number];

/** Every rule id. */
export type RuleId = TableRow['id'];
/** The ids of the rules of one kind. */
export type RuleIdOfKind<K extends RuleKind> = Extract<TableRow, { readonly kind: K }>['id'];
/** The ids of the rules that read one input. */
export type RuleIdReading<R extends RuleReads> = Extract<TableRow, { readonly reads: R }>['id'];

/** The ids of the rules of one kind that read one input. */
export type RuleIdWhere<K extends RuleKind, R extends RuleReads> = Extract<TableRow, { readonly kind: K; readonly reads: R }>['id'];

/** A rule of the table, with its id narrowed to the known ids. */
export interface Rule extends RuleDefinition {
  readonly id: RuleId;
}

/** Every rule, in the order the check prints them (static, live, then topology-only). */
export const RULES: readonly Rule[] = RULE_TABLE;

const byId = new Map<RuleId, Rule>(RULES.map((r) => [r.id, r]));

/** The rule with this id. */
export function ruleById(id: RuleId): Rule {
  const found = byId.get(id);
  if (!found) throw new Error(`no rule "${id}" in the rule table`);
  return found;
}

/** The rules that read `reads`, in table order. */
export function rulesReading<R extends RuleReads>(reads: R): (Rule & { readonly id: RuleIdReading<R> })[] {
  return RULES.filter((r): r is Rule & { readonly id: RuleIdReading<R> } => r.reads === reads);
}

/** The rules of one kind, in table order. */
export function rulesOfKind<K extends RuleKind>(kind: K): (Rule & { readonly id: RuleIdOfKind<K> })[] {
  return RULES.filter((r): r is Rule & { readonly id: RuleIdOfKind<K> } => r.kind === kind);
}

/** How topology validation reports a failure of a topology rule: an error, or a warning when the rule does not block a deploy. */
export function validationSeverity(rule: Rule): 'error' | 'warning' {
  return rule.blocksDeploy ? 'error' : 'warning';
}
