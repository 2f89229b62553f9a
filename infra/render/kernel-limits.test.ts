import { describe, expect, it } from 'vitest';
import { connectionCapacity, OPEN_FILE_RESERVE } from '../../gateway/src/limits/open-files.js';
import { DEFAULTS } from '../../gateway/src/config.js';
import { validateTopology, type TopologyInput } from '../topology/index.js';
import { containerKernelLimits } from './kernel-limits.js';
import { NGINX_LISTEN_BACKLOG, planNginx } from './nginx.js';

const topo = (input: TopologyInput = {}, target: 'docker' | 'aws' = 'docker') => validateTopology({ target, ...input }).topology;

describe('containerKernelLimits (pure)', () => {
  it("gives the gateway one descriptor per connection plus the gateway's own reserve, and nginx two per worker connection plus it", () => {
    expect(containerKernelLimits(topo())).toEqual({
      gateway: { nofile: 50_000 + 1000, somaxconn: 4096 },
      nginx: { nofile: 2 * 16_384 + 1000, somaxconn: 4096 },
    });
    expect(containerKernelLimits(topo({ limits: { maxConnections: 200_000 }, nginx: { workerConnections: 100_000 } }))).toMatchObject({
      gateway: { nofile: 201_000 },
      nginx: { nofile: 201_000 },
    });
  });

  it("is exactly what the gateway's start-up check asks for: under it the gateway admits MAX_CONNECTIONS, one less and it would bound them", () => {
    for (const maxConnections of [1, 500, 50_000, 200_000]) {
      const { nofile } = containerKernelLimits(topo({ limits: { maxConnections } })).gateway;
      expect(connectionCapacity(maxConnections, { soft: nofile, hard: nofile })).toMatchObject({ connections: maxConnections, limitedByOpenFiles: false });
      expect(connectionCapacity(maxConnections, { soft: nofile - 1 }).limitedByOpenFiles).toBe(true);
      expect(nofile - maxConnections).toBe(OPEN_FILE_RESERVE);
    }
  });

  it("fits nginx's worker_rlimit_nofile under the container's hard limit on every containerised target", () => {
    for (const target of ['docker', 'aws'] as const) {
      for (const workerConnections of [64, 16_384, 500_000]) {
        const t = topo({ nginx: { workerConnections } }, target);
        const { nofile } = containerKernelLimits(t).nginx;
        expect(planNginx(t, target).workerRlimitNofile, `${target} ${workerConnections}`).toBe(nofile - OPEN_FILE_RESERVE);
      }
    }
  });

  it('lets the kernel keep the accept queue each listener asks for', () => {
    const limits = containerKernelLimits(topo());
    expect(limits.gateway.somaxconn).toBe(DEFAULTS.LISTEN_BACKLOG);
    expect(limits.nginx.somaxconn).toBe(NGINX_LISTEN_BACKLOG);
    expect(limits.nginx.somaxconn).toBe(planNginx(topo(), 'docker').listenBacklog);
  });
});
