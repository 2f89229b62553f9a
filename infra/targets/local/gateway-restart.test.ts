import { describe, expect, it } from 'vitest';
import { validateTopology } from '../../topology/index.js';
import { rollingRestartSteps, standInSpec } from './gateway-restart.js';
import { planLocalStack } from './plan.js';
import { generateSecrets } from './secrets.js';

describe('rollingRestartSteps', () => {
  it('takes one replica out of the upstream at a time, in order, the others staying up; its old process drains to it alone', () => {
    const steps = rollingRestartSteps([
      { name: 'gateway-1', port: 9001 },
      { name: 'gateway-2', port: 9002 },
      { name: 'gateway-3', port: 9003 },
    ]);
    expect(steps).toEqual([
      { replica: 'gateway-1', servers: [{ port: 9001, down: true }, { port: 9002 }, { port: 9003 }], drainTo: [{ port: 9001 }, { port: 9002, down: true }, { port: 9003, down: true }] },
      { replica: 'gateway-2', servers: [{ port: 9001 }, { port: 9002, down: true }, { port: 9003 }], drainTo: [{ port: 9001, down: true }, { port: 9002 }, { port: 9003, down: true }] },
      { replica: 'gateway-3', servers: [{ port: 9001 }, { port: 9002 }, { port: 9003, down: true }], drainTo: [{ port: 9001, down: true }, { port: 9002, down: true }, { port: 9003 }] },
    ]);
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
