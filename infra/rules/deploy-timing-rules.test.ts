import { describe, expect, it } from 'vitest';
import { renderNginxConfig } from '../render/nginx.js';
import { checkTopology, topologyChecksum, validateTopology, type TopologyInput } from '../topology/index.js';
import { ruleById } from './catalog.js';
import { evaluateStaticRules } from './static-rules.js';

// The rules that keep a deploy's timings in agreement (infra/render/deploy-timing.ts): stop
// timeouts against the drain window, nginx's reload grace, DNS staleness and keepalive.

const issuesOf = (input: TopologyInput) => checkTopology(input).issues.filter((i) => i.rule !== 'aws-https');
const rows = (input: TopologyInput, config?: (text: string) => string) => {
  const { topology } = validateTopology(input);
  const text = renderNginxConfig(topology);
  const nginxConfig = config ? config(text) : text;
  return new Map(evaluateStaticRules({ topology, nginxConfig, configChecksum: topologyChecksum(topology), expectedChecksum: topologyChecksum(topology) }, { stack: 'prod' }).map((r) => [r.id, r]));
};

describe('stop-timeout-covers-drain', () => {
  it('refuses an aws drain window that Fargate\'s 120 s stop cap cannot cover, naming the largest value that fits', () => {
    const issues = issuesOf({ target: 'aws', gateway: { drainWindowMs: 111_000 }, nginx: { workerShutdownTimeoutS: 115 } });
    expect(issues.map((i) => [i.rule, i.path, i.severity])).toEqual([
      ['stop-timeout-covers-drain', 'gateway.drainWindowMs', 'error'],
      ['stop-timeout-covers-drain', 'nginx.workerShutdownTimeoutS', 'error'],
    ]);
    expect(issues[0]!.message).toBe(
      'the gateway needs 121 s to stop (the 111 s drain window (gateway.drainWindowMs) + 10 s) but ECS on Fargate sends SIGKILL after at most 120 s: a deploy would cut its clients mid-drain',
    );
    expect(issues[0]!.fix).toBe('set gateway.drainWindowMs to 110000 or less and nginx.workerShutdownTimeoutS to 110 or less in the stack file, then pulumi up');
    expect(() => validateTopology({ target: 'aws', gateway: { drainWindowMs: 111_000 } })).toThrow(/problem/);
  });

  it('accepts the largest aws values, and any drain on docker, whose stop timeout has no cap', () => {
    expect(issuesOf({ target: 'aws', gateway: { drainWindowMs: 110_000 }, nginx: { workerShutdownTimeoutS: 110 } })).toEqual([]);
    expect(issuesOf({ target: 'docker', gateway: { drainWindowMs: 300_000 }, nginx: { workerShutdownTimeoutS: 300 } })).toEqual([]);
    expect(rows({ target: 'aws' }).get('stop-timeout-covers-drain')).toMatchObject({ status: 'pass', detail: 'gateway 15 s, nginx 40 s before SIGKILL (Fargate allows 120 s)' });
  });
});

describe('nginx-shutdown-covers-drain', () => {
  it('warns when old nginx workers would cut WebSockets before the gateway\'s drain ends', () => {
    const issues = issuesOf({ target: 'docker', gateway: { drainWindowMs: 60_000 }, nginx: { workerShutdownTimeoutS: 30 } });
    expect(issues.map((i) => [i.rule, i.path, i.severity])).toEqual([['nginx-shutdown-covers-drain', 'nginx.workerShutdownTimeoutS', 'warning']]);
    expect(issues[0]!.fix).toBe('set nginx.workerShutdownTimeoutS to at least 60 (the drain window in seconds) in the stack file, then pulumi up');
    expect(rows({ target: 'docker', gateway: { drainWindowMs: 60_000 } }).get('nginx-shutdown-covers-drain')!.status).toBe('fail');
    expect(rows({ target: 'docker' }).get('nginx-shutdown-covers-drain')!.status).toBe('pass');
  });
});

describe('dns-staleness-within-drain', () => {
  it('warns when DNS caches keep a draining gateway in nginx\'s upstream longer than the drain window', () => {
    // aws: 2 s Cloud Map TTL + 2 s nginx resolver cache.
    const aws = issuesOf({ target: 'aws', gateway: { drainWindowMs: 3_000 } });
    expect(aws.map((i) => [i.rule, i.path, i.severity])).toEqual([['dns-staleness-within-drain', 'gateway.drainWindowMs', 'warning']]);
    expect(aws[0]!.fix).toBe('set gateway.drainWindowMs to at least 4000 in the stack file, then pulumi up');
    expect(issuesOf({ target: 'docker', gateway: { drainWindowMs: 2_000 } })).toEqual([]);
    expect(issuesOf({ target: 'local', gateway: { drainWindowMs: 0 } }).filter((i) => i.rule === 'dns-staleness-within-drain')).toEqual([]);
    expect(rows({ target: 'aws' }).get('dns-staleness-within-drain')).toMatchObject({ status: 'pass', detail: 'DNS answers reused for at most 4 s <= drain window 5 s' });
  });
});

describe('keepalive-above-alb-idle', () => {
  it('passes the rendered aws config and fails one whose keepalive_timeout is not above the load balancer idle timeout', () => {
    const input: TopologyInput = { target: 'aws', aws: { albIdleTimeoutS: 300 } };
    expect(rows(input).get('keepalive-above-alb-idle')).toMatchObject({ status: 'pass', detail: 'keepalive_timeout 305s > load balancer idle timeout 300 s' });
    const cut = rows(input, (text) => text.replace('keepalive_timeout 305s;', 'keepalive_timeout 65s;')).get('keepalive-above-alb-idle')!;
    expect(cut.status).toBe('fail');
    expect(cut.detail).toMatch(/keepalive_timeout 65s is not above the load balancer's 300 s idle timeout/);
    expect(cut.fix).toBe(ruleById('keepalive-above-alb-idle').fix({ topology: validateTopology(input).topology, stack: 'prod' }));
    // Absent, nginx keeps 75 s: still below the balancer's 300 s.
    expect(rows(input, (text) => text.replace('keepalive_timeout 305s;', '')).get('keepalive-above-alb-idle')!.status).toBe('fail');
  });

  it('has nothing to compare on targets without a load balancer', () => {
    expect(rows({ target: 'docker' }).get('keepalive-above-alb-idle')!.status).toBe('pass');
  });
});
