import { describe, expect, it } from 'vitest';
import { validateTopology, type Topology, type TopologyInput } from '../topology/index.js';
import {
  ALB_KEEPALIVE_MARGIN_S,
  CLOUD_MAP_DNS_TTL_S,
  dnsStalenessS,
  fargateStopCapOverruns,
  FARGATE_MAX_STOP_TIMEOUT_S,
  gatewayDrainS,
  nginxClientKeepaliveS,
  nginxDeregistrationDelayS,
  NGINX_RESOLVER_VALID_S,
  peakTasks,
  rollingDeployment,
  stopPlans,
} from './deploy-timing.js';
import { BACKEND_STOP_GRACE_S } from './service-env.js';

const topo = (input: TopologyInput = {}): Topology => validateTopology({ target: 'docker', ...input }).topology;

describe('stopPlans', () => {
  it('gives each service its signal and a grace that covers its own drain', () => {
    const plans = stopPlans(topo({ gateway: { drainWindowMs: 7_500 }, nginx: { workerShutdownTimeoutS: 40 } }));
    expect(plans.gateway).toMatchObject({ signal: 'SIGTERM', graceS: 18 });
    expect(plans.backend).toMatchObject({ signal: 'SIGTERM', graceS: BACKEND_STOP_GRACE_S });
    expect(plans.nginx).toMatchObject({ signal: 'SIGQUIT', graceS: 50 });
    expect(plans.postgres).toMatchObject({ signal: 'SIGINT', graceS: 30 });
    expect(plans.redis).toMatchObject({ signal: 'SIGTERM', graceS: 30 });
  });

  it('rounds the drain window up to whole seconds', () => {
    expect(gatewayDrainS(topo({ gateway: { drainWindowMs: 1 } }))).toBe(1);
    expect(gatewayDrainS(topo({ gateway: { drainWindowMs: 0 } }))).toBe(0);
    expect(stopPlans(topo({ gateway: { drainWindowMs: 0 } })).gateway.graceS).toBe(10);
  });
});

describe('fargateStopCapOverruns', () => {
  it('names the setting to lower when a stop grace exceeds Fargate\'s 120 s', () => {
    const t = { target: 'aws', gateway: { drainWindowMs: 115_000 }, nginx: { workerShutdownTimeoutS: 200 } } as Topology;
    expect(fargateStopCapOverruns(t)).toEqual([
      { service: 'gateway', path: 'gateway.drainWindowMs', neededS: 125, largest: 110_000 },
      { service: 'nginx', path: 'nginx.workerShutdownTimeoutS', neededS: 210, largest: 110 },
    ]);
  });

  it('accepts the largest values that fit, and ignores targets without the cap', () => {
    const fits = { target: 'aws', gateway: { drainWindowMs: 110_000 }, nginx: { workerShutdownTimeoutS: 110 } } as Topology;
    expect(fargateStopCapOverruns(fits)).toEqual([]);
    expect(stopPlans(fits).gateway.graceS).toBe(FARGATE_MAX_STOP_TIMEOUT_S);
    expect(fargateStopCapOverruns({ ...fits, target: 'docker', gateway: { drainWindowMs: 300_000 } } as Topology)).toEqual([]);
  });
});

describe('rollingDeployment', () => {
  it('keeps every task serving and adds exactly one extra task, for any count ECS may round', () => {
    for (let n = 1; n <= 50; n++) {
      const d = rollingDeployment(n);
      expect(d.minimumHealthyPercent).toBe(100);
      expect(Math.ceil((n * d.minimumHealthyPercent) / 100)).toBe(n);
      expect(peakTasks(n, d), `desired ${n}`).toBe(n + 1);
    }
    expect(rollingDeployment(1)).toEqual({ minimumHealthyPercent: 100, maximumPercent: 200 });
    expect(rollingDeployment(3)).toEqual({ minimumHealthyPercent: 100, maximumPercent: 134 });
  });

  it('stops the old task first when tasks must never overlap', () => {
    expect(rollingDeployment(1, true)).toEqual({ minimumHealthyPercent: 0, maximumPercent: 100 });
    expect(peakTasks(1, rollingDeployment(1, true))).toBe(1);
  });

  it('refuses a count that is not a positive integer', () => {
    expect(() => rollingDeployment(0)).toThrow(/positive integer/);
    expect(() => rollingDeployment(1.5)).toThrow(/positive integer/);
  });
});

describe('load balancer, keepalive and DNS timings', () => {
  it('keeps a deregistered nginx task\'s connections for worker_shutdown_timeout', () => {
    expect(nginxDeregistrationDelayS(topo({ nginx: { workerShutdownTimeoutS: 42 } }))).toBe(42);
  });

  it('keeps nginx\'s client keepalive above the load balancer\'s idle timeout on aws only', () => {
    const t = topo({ aws: { albIdleTimeoutS: 120 } });
    expect(nginxClientKeepaliveS(t, 'aws')).toBe(120 + ALB_KEEPALIVE_MARGIN_S);
    expect(nginxClientKeepaliveS(t, 'docker')).toBe(65);
    expect(nginxClientKeepaliveS(t, 'local')).toBe(65);
  });

  it('matches nginx\'s resolver cache to the Cloud Map TTL and counts both caches on aws', () => {
    expect(NGINX_RESOLVER_VALID_S).toBe(CLOUD_MAP_DNS_TTL_S);
    expect(dnsStalenessS('aws')).toBe(CLOUD_MAP_DNS_TTL_S + NGINX_RESOLVER_VALID_S);
    expect(dnsStalenessS('docker')).toBe(NGINX_RESOLVER_VALID_S);
    expect(dnsStalenessS('local')).toBe(0);
    // Within the default 5 s drain window: reconnects leave a draining gateway before its window ends.
    expect(dnsStalenessS('aws')).toBeLessThanOrEqual(gatewayDrainS(topo()));
  });
});
