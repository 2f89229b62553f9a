import type { Target, Topology } from '../topology/index.js';

// The names services reach each other by, per target. nginx's upstreams and the targets that
// create the containers / Cloud Map services must agree on them, so both import them from here.

/** Container names on the Docker target (`<name>-backend`, `<name>-ws-gateway`, ...). */
export interface DockerContainerNames {
  readonly backend: string;
  readonly gateway: string;
  readonly nginx: string;
  readonly redis: string;
  readonly postgres: string;
}

/** Container names of every service, derived from `topology.name`. */
export function dockerContainerNames(topology: Pick<Topology, 'name'>): DockerContainerNames {
  const n = topology.name;
  return {
    backend: `${n}-backend`,
    gateway: `${n}-ws-gateway`,
    nginx: `${n}-nginx`,
    redis: `${n}-redis`,
    postgres: `${n}-postgres`,
  };
}

/** ECS service discovery (Cloud Map) names: one private DNS namespace, one service per upstream. */
export interface AwsServiceDiscoveryNames {
  /** Private DNS namespace, `<name>.local`. */
  readonly namespace: string;
  /** Cloud Map service name of the backend (`backend`). */
  readonly backendService: string;
  /** Cloud Map service name of the gateway (`ws-gateway`). */
  readonly gatewayService: string;
  /** Fully qualified name nginx resolves for the backend: `backend.<name>.local`. */
  readonly backendHost: string;
  /** Fully qualified name nginx resolves for the gateway: `ws-gateway.<name>.local`. */
  readonly gatewayHost: string;
}

/** Cloud Map namespace and service names the AWS target registers and nginx resolves. */
export function awsServiceDiscoveryNames(topology: Pick<Topology, 'name'>): AwsServiceDiscoveryNames {
  const namespace = `${topology.name}.local`;
  const backendService = 'backend';
  const gatewayService = 'ws-gateway';
  return {
    namespace,
    backendService,
    gatewayService,
    backendHost: `${backendService}.${namespace}`,
    gatewayHost: `${gatewayService}.${namespace}`,
  };
}

/** Host names of the two nginx upstreams. */
export interface UpstreamHosts {
  readonly backend: string;
  readonly gateway: string;
}

/** Where nginx finds the backend and the gateway on `target`: container names, Cloud Map names or loopback. */
export function upstreamHostsFor(topology: Pick<Topology, 'name'>, target: Target): UpstreamHosts {
  switch (target) {
    case 'docker': {
      const names = dockerContainerNames(topology);
      return { backend: names.backend, gateway: names.gateway };
    }
    case 'aws': {
      const names = awsServiceDiscoveryNames(topology);
      return { backend: names.backendHost, gateway: names.gatewayHost };
    }
    case 'local':
      return { backend: '127.0.0.1', gateway: '127.0.0.1' };
  }
}

/** DNS server nginx asks to re-resolve upstream names: Docker's embedded DNS, or the Amazon VPC resolver. */
export function dnsResolverFor(target: Target): string | undefined {
  switch (target) {
    case 'docker':
      return '127.0.0.11';
    case 'aws':
      return '169.254.169.253';
    case 'local':
      return undefined;
  }
}
