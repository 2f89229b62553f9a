import { describe, expect, it } from 'vitest';
import { describeUnhealthy, downDependencies } from './health.js';

describe('describeUnhealthy', () => {
  it('names the dependency a 503 reports down before anything else', () => {
    const backend = JSON.stringify({ status: 'degraded', db: 'error: connect ECONNREFUSED 127.0.0.1:5433', redis: 'ok', workers: 2 });
    expect(describeUnhealthy(503, backend)).toBe('Postgres down (connect ECONNREFUSED 127.0.0.1:5433): HTTP 503 degraded, workers 2');
    const gateway = JSON.stringify({ status: 'unavailable', instance: 'gw-1', broker: 'redis', redis: 'down', db: 'up', connections: 8 });
    expect(describeUnhealthy(503, gateway)).toBe('Redis down: HTTP 503 unavailable, instance gw-1, broker redis, connections 8');
  });
  it('describes a 503 with nothing down, and a body that is not JSON, without throwing', () => {
    expect(describeUnhealthy(503, JSON.stringify({ status: 'draining', redis: 'up', db: 'up' }))).toBe('HTTP 503 draining, redis up, db up');
    expect(describeUnhealthy(502, '<html>bad gateway</html>')).toBe('HTTP 502: <html>bad gateway</html>');
  });
  it('reads both health dialects', () => {
    expect(downDependencies({ db: 'ok', redis: 'error: Connection is closed.' })).toEqual(['Redis down (Connection is closed.)']);
    expect(downDependencies({ db: 'down', redis: 'not-used' })).toEqual(['Postgres down']);
  });
});
