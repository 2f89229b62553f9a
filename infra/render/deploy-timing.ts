import type { Target, Topology } from '../topology/index.js';
import { BACKEND_STOP_GRACE_S } from './service-env.js';

// Every timing a deploy depends on, derived once from the topology: how long each service gets
// between its stop signal and SIGKILL (and which signal), how ECS replaces tasks, how long the
// load balancer keeps a deregistered nginx task's connections, how stale a DNS answer for an
// upstream can be, and how long nginx keeps an idle client connection. The docker and aws
// targets, the nginx render and the rules read these values, so a drain window, a stop timeout
// and a DNS TTL cannot disagree by being restated in two places.

/** Seconds on top of a service's own drain before SIGKILL: the process flushes logs and closes its clients. */
export const STOP_MARGIN_S = 10;

/** Fargate's ceiling for a container's stopTimeout (ECS ContainerDefinition.stopTimeout). */
export const FARGATE_MAX_STOP_TIMEOUT_S = 120;

/** Seconds Redis and Postgres get to stop: Redis writes its append-only file, Postgres checkpoints. */
export const DATA_STOP_GRACE_S = 30;

/**
 * How long a DNS answer for an upstream name may be reused, in seconds: the Cloud Map record TTL
 * (aws) and nginx's `resolver ... valid=` (docker, aws). Short, so a replaced or draining
 * gateway leaves nginx's upstream within seconds; lookups stay cheap (one per name per worker).
 */
export const DNS_REFRESH_S = 2;

/**
 * Seconds nginx's client keepalive_timeout exceeds the load balancer's idle timeout (aws): the
 * balancer, not nginx, must be the side that closes an idle connection, or a request it sends as
 * nginx closes that connection is answered 502.
 */
export const ALB_KEEPALIVE_MARGIN_S = 5;

/** nginx's client keepalive_timeout where no load balancer sits in front (the value of the stock nginx.conf). */
export const NGINX_DEFAULT_KEEPALIVE_S = 65;

/** Services whose stop the targets time. */
export type TimedService = 'gateway' | 'backend' | 'nginx' | 'redis' | 'postgres';

/** Signals a container is stopped with. */
export type StopSignal = 'SIGTERM' | 'SIGQUIT' | 'SIGINT';

/** How one service is stopped: the signal, then SIGKILL after `graceS` seconds. */
export interface StopPlan {
  readonly signal: StopSignal;
  readonly graceS: number;
  /** Why this service needs that long (for docs and rule messages). */
  readonly covers: string;
}

/** The gateway's drain window in whole seconds (4200 closes are spread over it on SIGTERM). */
export function gatewayDrainS(t: Pick<Topology, 'gateway'>): number {
  return Math.ceil(t.gateway.drainWindowMs / 1000);
}

/**
 * Stop signal and grace of every service: the gateway drains then exits, the backend finishes
 * its requests, nginx stops gracefully on SIGQUIT (SIGTERM is its fast stop, which cuts every
 * WebSocket) and lets old connections run for worker_shutdown_timeout, Postgres takes SIGINT
 * (fast shutdown: SIGTERM is its smart shutdown, which waits for every pooled client to leave and
 * ends in SIGKILL and crash recovery), Redis saves on SIGTERM.
 */
export function stopPlans(t: Pick<Topology, 'gateway' | 'nginx'>): Readonly<Record<TimedService, StopPlan>> {
  return {
    gateway: { signal: 'SIGTERM', graceS: gatewayDrainS(t) + STOP_MARGIN_S, covers: `the ${gatewayDrainS(t)} s drain window (gateway.drainWindowMs)` },
    backend: { signal: 'SIGTERM', graceS: BACKEND_STOP_GRACE_S, covers: 'the requests the backend holds' },
    nginx: { signal: 'SIGQUIT', graceS: t.nginx.workerShutdownTimeoutS + STOP_MARGIN_S, covers: `worker_shutdown_timeout ${t.nginx.workerShutdownTimeoutS} s (nginx.workerShutdownTimeoutS)` },
    redis: { signal: 'SIGTERM', graceS: DATA_STOP_GRACE_S, covers: 'writing the append-only file' },
    postgres: { signal: 'SIGINT', graceS: DATA_STOP_GRACE_S, covers: 'the fast-shutdown checkpoint' },
  };
}

/** A service whose stop grace ECS cannot give it on Fargate, with the stack-file value to lower. */
export interface StopCapOverrun {
  readonly service: 'gateway' | 'nginx';
  readonly path: 'gateway.drainWindowMs' | 'nginx.workerShutdownTimeoutS';
  readonly neededS: number;
  /** The largest value of `path` that fits (in the path's own unit). */
  readonly largest: number;
}

/** The ECS services whose stop grace exceeds Fargate's 120 s stopTimeout ceiling (aws only). */
export function fargateStopCapOverruns(t: Pick<Topology, 'target' | 'gateway' | 'nginx'>): StopCapOverrun[] {
  if (t.target !== 'aws') return [];
  const plans = stopPlans(t);
  const out: StopCapOverrun[] = [];
  if (plans.gateway.graceS > FARGATE_MAX_STOP_TIMEOUT_S) {
    out.push({ service: 'gateway', path: 'gateway.drainWindowMs', neededS: plans.gateway.graceS, largest: (FARGATE_MAX_STOP_TIMEOUT_S - STOP_MARGIN_S) * 1000 });
  }
  if (plans.nginx.graceS > FARGATE_MAX_STOP_TIMEOUT_S) {
    out.push({ service: 'nginx', path: 'nginx.workerShutdownTimeoutS', neededS: plans.nginx.graceS, largest: FARGATE_MAX_STOP_TIMEOUT_S - STOP_MARGIN_S });
  }
  return out;
}

/** ECS rolling-update bounds of one service (percent of its desired count). */
export interface RollingDeployment {
  readonly minimumHealthyPercent: number;
  readonly maximumPercent: number;
}

/**
 * Replaces one task at a time: ECS rounds the minimum up and the maximum down, so 100 % keeps
 * every task serving and 100 + ceil(100/N) % allows exactly one extra task for N up to 99; the new
 * task must be healthy before an old one is stopped. `exclusive` (a single gateway with the
 * in-memory broker, whose events must never be split over two tasks) stops the old task first.
 */
export function rollingDeployment(desiredCount: number, exclusive = false): RollingDeployment {
  if (!Number.isInteger(desiredCount) || desiredCount < 1) throw new Error(`desired count must be a positive integer, got ${desiredCount}`);
  if (exclusive) return { minimumHealthyPercent: 0, maximumPercent: 100 };
  return { minimumHealthyPercent: 100, maximumPercent: 100 + Math.ceil(100 / desiredCount) };
}

/** Tasks running at once at the peak of a rolling update (ECS rounds the maximum percent down). */
export function peakTasks(desiredCount: number, deployment: RollingDeployment): number {
  return Math.floor((desiredCount * deployment.maximumPercent) / 100);
}

/**
 * The load balancer's deregistration delay for nginx tasks: as long as a reload lets old nginx
 * workers keep their WebSockets (worker_shutdown_timeout), so a replaced nginx task's clients get
 * the same time to move as after a reload; ECS then stops the task (SIGQUIT) with
 * {@link stopPlans}' nginx grace. Only one nginx task is replaced at a time
 * ({@link rollingDeployment}), so the other keeps its WebSockets and takes the reconnects.
 */
export function nginxDeregistrationDelayS(t: Pick<Topology, 'nginx'>): number {
  return t.nginx.workerShutdownTimeoutS;
}

/** nginx's client keepalive_timeout: above the load balancer's idle timeout on aws, nginx's default elsewhere. */
export function nginxClientKeepaliveS(t: Pick<Topology, 'aws'>, target: Target): number {
  return target === 'aws' ? t.aws.albIdleTimeoutS + ALB_KEEPALIVE_MARGIN_S : NGINX_DEFAULT_KEEPALIVE_S;
}

/** The Cloud Map A-record TTL (aws) for the backend and gateway names. */
export const CLOUD_MAP_DNS_TTL_S = DNS_REFRESH_S;

/** nginx's `resolver ... valid=`: how long it reuses an answer for an upstream name. */
export const NGINX_RESOLVER_VALID_S = DNS_REFRESH_S;

/**
 * Longest time nginx can still send new connections to a gateway that has left DNS: nginx's
 * cached answer, plus on aws the VPC resolver's cached Cloud Map record. Docker's embedded DNS
 * answers from the live container list, so only nginx's cache counts there; locally nginx
 * proxies to fixed loopback ports and resolves nothing.
 */
export function dnsStalenessS(target: Target): number {
  switch (target) {
    case 'aws':
      return CLOUD_MAP_DNS_TTL_S + NGINX_RESOLVER_VALID_S;
    case 'docker':
      return NGINX_RESOLVER_VALID_S;
    case 'local':
      return 0;
  }
}
