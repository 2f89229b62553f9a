import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  checkTopology,
  loadTopologyFromStackFile,
  topologyChecksum,
  TopologyError,
  topologyFromPulumiConfig,
  topologyFromStackText,
  topologyInputFromConfig,
  validateTopology,
  type TopologyIssue,
} from './index.js';

const errorsOf = (input: unknown): TopologyIssue[] => checkTopology(input).issues.filter((i) => i.severity === 'error');
const pathsOf = (input: unknown): string[] => errorsOf(input).map((i) => i.path);

describe('defaults', () => {
  it('fills in the documented defaults', () => {
    const { topology, warnings } = validateTopology({});
    expect(warnings).toEqual([]);
    expect(topology).toMatchObject({
      name: 'replyx',
      target: 'docker',
      wsRoute: 'gateway',
      backend: { workers: 4, port: 8000, replicas: 1 },
      gateway: { replicas: 1, port: 8001, heartbeatMs: 25_000, broker: 'redis' },
      nginx: { port: 8080, proxyReadTimeoutS: 120 },
      redis: { port: 6380 },
      postgres: { port: 5433, database: 'replyx', user: 'replyx' },
      limits: { maxPayloadBytes: 65_536 },
    });
    expect(topology.backend.image).toBeUndefined();
  });

  it('freezes the validated value, deeply', () => {
    const { topology } = validateTopology({ backend: { workers: 2 } });
    expect(Object.isFrozen(topology)).toBe(true);
    expect(Object.isFrozen(topology.backend)).toBe(true);
    expect(() => {
      (topology.backend as { workers: number }).workers = 9;
    }).toThrow(TypeError);
  });

  it('does not mutate its input', () => {
    const input = { backend: { workers: 2 } };
    validateTopology(input);
    expect(input).toEqual({ backend: { workers: 2 } });
    expect(Object.isFrozen(input)).toBe(false);
  });
});

describe('field rules', () => {
  it.each([
    [{ backend: { workers: 0 } }, 'backend.workers', 'must be >= 1'],
    [{ backend: { workers: 1.5 } }, 'backend.workers', 'must be an integer'],
    [{ backend: { port: 70000 } }, 'backend.port', 'must be <= 65535'],
    [{ gateway: { heartbeatMs: 10 } }, 'gateway.heartbeatMs', 'must be >= 1000'],
    [{ wsRoute: 'sideways' }, 'wsRoute', 'must be one of "gateway" | "backend"'],
    [{ target: 'k8s' }, 'target', 'must be one of'],
    [{ name: 'Replyx_Prod' }, 'name', 'lowercase'],
    [{ nginx: { clientMaxBodySize: 'big' } }, 'nginx.clientMaxBodySize', 'nginx size'],
    [{ backend: { image: 'has space' } }, 'backend.image', 'image reference'],
    [{ backend: 'four' }, 'backend', 'must be an object'],
  ])('rejects %j at %s', (input, path, message) => {
    const errors = errorsOf(input);
    const hit = errors.find((e) => e.path === path);
    expect(hit, JSON.stringify(errors)).toBeDefined();
    expect(hit!.message).toContain(message);
    expect(hit!.fix.length).toBeGreaterThan(5);
  });

  it('names unknown keys with their full path', () => {
    expect(pathsOf({ backend: { wokers: 4 }, extra: true })).toEqual(expect.arrayContaining(['backend.wokers', 'extra']));
  });

  it('tells how to rename a renamed key', () => {
    const [issue] = checkTopology({ nginx: { wsProxyBufferKb: 1 } }).issues;
    expect(issue).toMatchObject({ path: 'nginx.wsProxyBufferKb', message: 'unknown key (renamed)', severity: 'error' });
    expect(issue?.fix).toMatch(/^rename it to nginx\.wsProxyBufferBytes, in bytes/);
  });

  it('accepts valid values at the edges', () => {
    expect(errorsOf({ backend: { workers: 1, port: 1 }, gateway: { heartbeatMs: 1000 } })).toEqual([]);
    expect(errorsOf({ backend: { workers: 64, port: 65535 } })).toEqual([]);
  });
});

describe('cross-field rules', () => {
  it('gateway replicas > 1 need the Redis broker', () => {
    const bad = errorsOf({ gateway: { replicas: 3, broker: 'memory' } });
    expect(bad).toHaveLength(1);
    expect(bad[0]).toMatchObject({ path: 'gateway.replicas', rule: 'single-gateway-or-broker' });
    expect(errorsOf({ gateway: { replicas: 3, broker: 'redis' } })).toEqual([]);
    expect(errorsOf({ gateway: { replicas: 1, broker: 'memory' } })).toEqual([]);
  });

  it('heartbeat must be shorter than the nginx read timeout', () => {
    expect(errorsOf({ gateway: { heartbeatMs: 120_000 }, nginx: { proxyReadTimeoutS: 120 } })[0]).toMatchObject({
      path: 'gateway.heartbeatMs',
      rule: 'heartbeat-vs-timeouts',
    });
    expect(errorsOf({ gateway: { heartbeatMs: 119_999 }, nginx: { proxyReadTimeoutS: 120 } })).toEqual([]);
  });

  it('no two services on one port', () => {
    const bad = errorsOf({ redis: { port: 8000 } });
    expect(bad).toEqual([expect.objectContaining({ path: 'redis.port', rule: 'unique-ports', message: 'port 8000 is used by backend and redis' })]);
    expect(errorsOf({ redis: { port: 8002 } })).toEqual([]);
  });

  it('counts the monitoring ports only when monitoring runs, Grafana only on docker', () => {
    expect(errorsOf({ monitoring: { prometheusPort: 8080 } })).toEqual([]);
    expect(errorsOf({ monitoring: { enabled: true, prometheusPort: 8080 } })).toEqual([
      expect.objectContaining({ path: 'monitoring.prometheusPort', rule: 'unique-ports', message: 'port 8080 is used by nginx and prometheus' }),
    ]);
    expect(errorsOf({ target: 'docker', monitoring: { enabled: true, grafanaPort: 9190 } })).toEqual([
      expect.objectContaining({ path: 'monitoring.grafanaPort', message: 'port 9190 is used by prometheus and grafana' }),
    ]);
    expect(errorsOf({ target: 'local', monitoring: { enabled: true, grafanaPort: 8080 } })).toEqual([]);
  });

  it('wsRoute=backend with workers > 1 is allowed but flagged as a desync risk', () => {
    const { warnings } = validateTopology({ wsRoute: 'backend', backend: { workers: 4 } });
    expect(warnings).toEqual([expect.objectContaining({ path: 'wsRoute', severity: 'warning', rule: 'desync-risk' })]);
    expect(warnings[0]!.message).toContain('desync');
    expect(validateTopology({ wsRoute: 'backend', backend: { workers: 1 } }).warnings).toEqual([]);
    expect(validateTopology({ wsRoute: 'gateway', backend: { workers: 4 } }).warnings).toEqual([]);
  });

  it('the ALB idle timeout must exceed the heartbeat on aws only', () => {
    expect(pathsOf({ target: 'aws', aws: { albIdleTimeoutS: 20 } })).toEqual(['aws.albIdleTimeoutS']);
    expect(pathsOf({ target: 'docker', aws: { albIdleTimeoutS: 20 } })).toEqual([]);
    expect(pathsOf({ target: 'aws', aws: { albIdleTimeoutS: 26 } })).toEqual([]);
  });

  it('an existing VPC comes with its subnets', () => {
    expect(pathsOf({ aws: { vpcId: 'vpc-1' } })).toEqual(['aws.vpcId']);
    expect(pathsOf({ aws: { publicSubnetIds: ['s-1'] } })).toEqual(['aws.vpcId']);
    expect(pathsOf({ aws: { vpcId: 'vpc-1', publicSubnetIds: ['a'], privateSubnetIds: ['b'] } })).toEqual([]);
  });

  it('reports schema and cross-field problems together', () => {
    const paths = pathsOf({ backend: { workers: 0 }, gateway: { replicas: 2, broker: 'memory' }, redis: { port: 8001 } });
    expect(paths).toEqual(expect.arrayContaining(['backend.workers', 'gateway.replicas', 'redis.port']));
  });
});

describe('TopologyError', () => {
  it('lists every problem with its path and fix', () => {
    let caught: unknown;
    try {
      validateTopology({ backend: { workers: 0 }, wsRoute: 'x' }, 'Pulumi.prod.yaml');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(TopologyError);
    const err = caught as TopologyError;
    expect(err.code).toBe('RPX_TOPOLOGY_INVALID');
    expect(err.message).toBe('Pulumi.prod.yaml: 2 problems in the stack topology');
    expect(err.details).toEqual([
      'wsRoute: must be one of "gateway" | "backend" (fix: use one of: "gateway", "backend")',
      'backend.workers: must be >= 1 (fix: set backend.workers to 1 or more)',
    ]);
  });
});

describe('checksum', () => {
  it('is stable for equal topologies and changes with any value', () => {
    const a = validateTopology({ backend: { workers: 4 } }).topology;
    const b = validateTopology({}).topology;
    const c = validateTopology({ wsRoute: 'backend', backend: { workers: 1 } }).topology;
    expect(topologyChecksum(a)).toBe(topologyChecksum(b));
    expect(topologyChecksum(a)).not.toBe(topologyChecksum(c));
    expect(topologyChecksum(a)).toMatch(/^[0-9a-f]{16}$/);
  });
});

describe('stack files', () => {
  const good = `config:
  aws:region: eu-west-1
  replyx:jwtSecret:
    secure: AAABAKx
  replyx:target: local
  replyx:wsRoute: backend
  replyx:backend:
    workers: 1
`;

  it('reads replyx: keys, skips other namespaces and secrets', () => {
    const { topology, warnings } = topologyFromStackText(good, 'Pulumi.x.yaml');
    expect(topology.target).toBe('local');
    expect(topology.wsRoute).toBe('backend');
    expect(topology.backend.workers).toBe(1);
    expect(warnings).toEqual([]);
    expect(topologyInputFromConfig({ 'replyx:publishKey': 'x', 'other:a': 1, 'replyx:name': 'n' })).toEqual({ name: 'n' });
  });

  it('gives all problems of a bad stack file at once, with paths', () => {
    const bad = `config:
  replyx:wsRoute: sideways
  replyx:backend:
    workers: 0
    colour: blue
  replyx:gateway: {replicas: 2, broker: memory}
  replyx:redis: {port: 8080}
`;
    let caught: TopologyError | undefined;
    try {
      topologyFromStackText(bad, 'Pulumi.bad.yaml');
    } catch (err) {
      caught = err as TopologyError;
    }
    expect(caught?.issues.map((i) => i.path).sort()).toEqual(['backend.colour', 'backend.workers', 'gateway.replicas', 'redis.port', 'wsRoute']);
    expect(caught?.message).toContain('Pulumi.bad.yaml: 5 problems');
  });

  it('names YAML syntax errors', () => {
    expect(() => topologyFromStackText('config:\n  replyx:backend: [unclosed\n', 'Pulumi.y.yaml')).toThrow(/Pulumi\.y\.yaml/);
    expect(() => topologyFromStackText('- a\n- b\n', 'Pulumi.y.yaml')).toThrow(/not a YAML mapping/);
    expect(() => topologyFromStackText('config: 3\n', 'Pulumi.y.yaml')).toThrow(/"config" is not a mapping/);
  });

  it('an empty stack file is all defaults', () => {
    expect(topologyFromStackText('', 'Pulumi.e.yaml').topology.backend.workers).toBe(4);
  });

  it('loads from disk, and a missing file says what to do', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'topo-'));
    try {
      await writeFile(path.join(dir, 'Pulumi.t.yaml'), good);
      expect((await loadTopologyFromStackFile(path.join(dir, 'Pulumi.t.yaml'))).topology.wsRoute).toBe('backend');
      await expect(loadTopologyFromStackFile(path.join(dir, 'Pulumi.none.yaml'))).rejects.toMatchObject({ code: 'RPX_STACK_FILE_MISSING' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('the shipped stack files are valid', async () => {
    for (const stack of ['dev', 'local']) {
      const { topology } = await loadTopologyFromStackFile(path.join(import.meta.dirname, '..', '..', `Pulumi.${stack}.yaml`));
      expect(topology.wsRoute).toBe('gateway');
    }
  });
});

describe('Pulumi config', () => {
  it('decodes allConfig strings (objects JSON-encoded, scalars as text)', () => {
    const { topology } = topologyFromPulumiConfig({
      'replyx:backend': '{"workers":2,"port":9000}',
      'replyx:wsRoute': 'gateway',
      'replyx:postgresPassword': 'secret',
      'aws:region': 'us-east-1',
    });
    expect(topology.backend).toMatchObject({ workers: 2, port: 9000 });
  });

  it('fails with every problem', () => {
    expect(() => topologyFromPulumiConfig({ 'replyx:backend': '{"workers":0}', 'replyx:bogus': '1' })).toThrow(TopologyError);
  });
});
