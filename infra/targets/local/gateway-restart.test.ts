import { describe, expect, it } from 'vitest';
import { validateTopology } from '../../topology/index.js';
import { rollingRestartSteps, standInSpec } from './gateway-restart.js';
import { planLocalStack } from './plan.js';
import { generateSecrets } from './secrets.js';

describe('rollingRestartSteps', () => {
  const replica = (i: number) => ({ name: `gateway-${i}` as const, port: 9000 + i });
  const gateways = [1, 2, 3].map(replica);

  it('takes one replica out at a time, in order; once one is new, new handshakes go to new processes only; each old process drains to its own new one', () => {
    expect(rollingRestartSteps(gateways)).toEqual([
      { replica: 'gateway-1', servers: [{ port: 9001, down: true }, { port: 9002 }, { port: 9003 }], drainTo: [{ port: 9001 }, { port: 9002, down: true }, { port: 9003, down: true }] },
      { replica: 'gateway-2', servers: [{ port: 9001 }, { port: 9002, down: true }, { port: 9003, down: true }], drainTo: [{ port: 9001, down: true }, { port: 9002 }, { port: 9003, down: true }] },
      { replica: 'gateway-3', servers: [{ port: 9001 }, { port: 9002 }, { port: 9003, down: true }], drainTo: [{ port: 9001, down: true }, { port: 9002, down: true }, { port: 9003 }] },
    ]);
  });

  it('restarting one replica leaves the others up while it is replaced', () => {
    expect(rollingRestartSteps(gateways, 'gateway-2')).toEqual([
      { replica: 'gateway-2', servers: [{ port: 9001 }, { port: 9002, down: true }, { port: 9003 }], drainTo: [{ port: 9001, down: true }, { port: 9002 }, { port: 9003, down: true }] },
    ]);
    expect(rollingRestartSteps(gateways, 'gateway-9')).toEqual([]);
  });

  it('never leaves the upstream without a replica that takes handshakes', () => {
    for (const n of [2, 3, 5]) {
      const gs = Array.from({ length: n }, (_, i) => replica(i + 1));
      for (const step of rollingRestartSteps(gs)) expect(step.servers.some((s) => !s.down)).toBe(true);
    }
  });
});

describe('standInSpec', () => {
  it('is the same gateway on the spare port, with its pid where a stop of the stack finds it', () => {
    const plan = planLocalStack(validateTopology({ target: 'local', gateway: { port: 9501 } }).topology, { stateDir: '/tmp/state', repoDir: '/repo', secrets: generateSecrets(), nodePath: '/usr/bin/node' });
    const gateway = plan.services.find((s) => s.name === 'gateway')!;
    const standIn = standInSpec(gateway, 9502);
    expect(standIn).toEqual({
      ...gateway,
      port: 9502,
      env: { ...gateway.env, PORT: '9502', INSTANCE_ID: `${gateway.env.INSTANCE_ID!}-stand-in` },
      ready: { kind: 'http', url: 'http://127.0.0.1:9502/health' },
      pidFile: '/tmp/state/run/gateway.pid.stand-in',
    });
  });
});
