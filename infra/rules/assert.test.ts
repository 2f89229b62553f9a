import { describe, expect, it } from 'vitest';
import { validateTopology, type Topology, type TopologyInput } from '../topology/index.js';
import { renderNginxConfig } from '../render/nginx.js';
import { assertArchitecture, checkStaticArchitecture } from './index.js';
import { isReplyxError } from '../errors.js';

const topo = (input: TopologyInput) => validateTopology(input, 'test').topology;

describe('assertArchitecture', () => {
  it.each(['local', 'docker', 'aws'] as const)('passes the rendered config of a default %s topology', (target) => {
    const t = topo({ target, ...(target === 'aws' ? { aws: { certificateArn: 'arn:aws:acm:eu-west-1:123456789012:certificate/abc' } } : {}) });
    expect(checkStaticArchitecture(t).filter((r) => r.status !== 'pass' && r.status !== 'skip')).toEqual([]);
    expect(assertArchitecture(t)).toEqual([]);
  });

  it('fails the check, and warns the deploy, for plain HTTP on aws and for the legacy widget handshake', () => {
    const plain = topo({ target: 'aws' });
    expect(checkStaticArchitecture(plain).filter((r) => r.status === 'fail').map((r) => r.id)).toEqual(['aws-https']);
    expect(assertArchitecture(plain).map((w) => w.id)).toEqual(['aws-https']);
    const legacy = topo({ target: 'local', gateway: { legacyWidgetAuth: true } });
    expect(checkStaticArchitecture(legacy).filter((r) => r.status === 'fail').map((r) => r.id)).toEqual(['legacy-widget-auth-off']);
    expect(assertArchitecture(legacy).map((w) => w.id)).toEqual(['legacy-widget-auth-off']);
  });

  it('lets a rollback to the backend through with a desync warning instead of blocking pulumi up', () => {
    const warnings = assertArchitecture(topo({ target: 'docker', wsRoute: 'backend', backend: { workers: 4 } }));
    expect(warnings.map((w) => w.id)).toEqual(['desync-risk']);
  });

  it('throws RPX_ARCHITECTURE listing each blocking failure', () => {
    const t = topo({ target: 'local' });
    const broken = renderNginxConfig(t, 'local').replace('proxy_buffering off;', '').replace(/worker_shutdown_timeout [^;]+;/, '');
    let caught: unknown;
    try {
      assertArchitecture(t, { nginxConfig: broken });
    } catch (err) {
      caught = err;
    }
    expect(isReplyxError(caught) && caught.code).toBe('RPX_ARCHITECTURE');
    const details = (caught as { details: string[] }).details;
    expect(details.map((d) => d.split(':')[0])).toEqual(['ws-buffering-off', 'worker-shutdown-timeout']);
  });

  it('blocks a topology that validation would refuse (defence in depth)', () => {
    const t = structuredClone(topo({ target: 'docker' })) as unknown as { gateway: { replicas: number; broker: string } };
    t.gateway.replicas = 2;
    t.gateway.broker = 'memory';
    expect(() => assertArchitecture(t as unknown as Topology)).toThrow(/single-gateway-or-broker/);
  });
});
