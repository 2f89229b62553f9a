import { describe, expect, it } from 'vitest';
import { rollingRestartSteps } from './gateway-restart.js';

describe('rollingRestartSteps', () => {
  it('takes one replica out of the upstream at a time, in order, the others staying up', () => {
    const steps = rollingRestartSteps([
      { name: 'gateway-1', port: 9001 },
      { name: 'gateway-2', port: 9002 },
      { name: 'gateway-3', port: 9003 },
    ]);
    expect(steps).toEqual([
      { replica: 'gateway-1', servers: [{ port: 9001, down: true }, { port: 9002 }, { port: 9003 }] },
      { replica: 'gateway-2', servers: [{ port: 9001 }, { port: 9002, down: true }, { port: 9003 }] },
      { replica: 'gateway-3', servers: [{ port: 9001 }, { port: 9002 }, { port: 9003, down: true }] },
    ]);
  });
});
