import { DEFAULT_LISTEN_BACKLOG } from '../../gateway/src/limits/listen-backlog.js';
import { openFileLimitFor } from '../../gateway/src/limits/open-files.js';
import type { Topology } from '../topology/index.js';
import { NGINX_LISTEN_BACKLOG, nginxConnectionDescriptors } from './nginx.js';

// The kernel limits the two connection-holding services need, derived once from the topology for
// every target that sets them on a container (docker, aws). The open-file figure is the gateway's
// own formula (connection descriptors + OPEN_FILE_RESERVE, from a gateway leaf module that pulls
// in none of its runtime), so the limit a container gets is exactly what the gateway's start-up
// check asks for, and net.core.somaxconn is the accept queue each listener asks for, so the
// kernel does not cut it short. The local target sets neither: its processes inherit the shell's
// limits (the gateway bounds admission by them; nginx's worker_rlimit_nofile is capped by them).

/** The open-file limit (soft = hard) and accept-queue cap one container is given. */
export interface KernelLimits {
  readonly nofile: number;
  readonly somaxconn: number;
}

/** The services whose containers get {@link KernelLimits}. */
export type KernelLimitedService = 'gateway' | 'nginx';

/** The nofile and net.core.somaxconn of the gateway's and nginx's containers (pure). */
export function containerKernelLimits(topology: Topology): Readonly<Record<KernelLimitedService, KernelLimits>> {
  return {
    // One descriptor per WebSocket, up to limits.maxConnections.
    gateway: { nofile: openFileLimitFor(topology.limits.maxConnections), somaxconn: DEFAULT_LISTEN_BACKLOG },
    // worker_rlimit_nofile must fit under the container's hard limit, or the master's setrlimit fails.
    nginx: { nofile: openFileLimitFor(nginxConnectionDescriptors(topology.nginx.workerConnections)), somaxconn: NGINX_LISTEN_BACKLOG },
  };
}
