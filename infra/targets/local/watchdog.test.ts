import { describe, expect, it } from 'vitest';
import { hasReadyLine } from './supervisor.js';
import { backoffMs, DEFAULT_RESTART_POLICY, nextAction, serviceCondition, type RestartPolicy, type WatchState } from './watchdog.js';

const policy: RestartPolicy = { pollMs: 100, backoffBaseMs: 500, backoffCapMs: 4000, resetAfterMs: 10_000 };

describe('backoffMs', () => {
  it('doubles from the base per crash in a row and stops at the cap', () => {
    expect([1, 2, 3, 4, 5, 10].map((n) => backoffMs(n, policy))).toEqual([500, 1000, 2000, 4000, 4000, 4000]);
    expect(backoffMs(0, policy)).toBe(500);
  });
  it('defaults to a sub-second first restart with a 30 s cap', () => {
    expect(backoffMs(1)).toBeLessThan(1000);
    expect(backoffMs(50)).toBe(DEFAULT_RESTART_POLICY.backoffCapMs);
  });
});

describe('nextAction', () => {
  it('leaves a stopped service alone: an intended stop removes the pid file', () => {
    const r = nextAction({ streak: 0 }, 'stopped', 1000, policy);
    expect(r).toEqual({ state: { streak: 0 }, start: false, crashed: false });
  });
  it('on a crash, schedules a restart after the backoff, then starts it once the time has come', () => {
    const crashed = nextAction({ streak: 0, upSince: 0 }, 'crashed', 1000, policy);
    expect(crashed).toEqual({ state: { streak: 1, restartAt: 1500 }, start: false, crashed: true });
    // The watchdog removes the dead pid file: the service now reads as stopped, but a restart is owed.
    expect(nextAction(crashed.state, 'stopped', 1400, policy).start).toBe(false);
    const due = nextAction(crashed.state, 'stopped', 1500, policy);
    expect(due.start).toBe(true);
    expect(due.crashed).toBe(false);
  });
  it('grows the delay while crashes repeat and resets it after a long enough uptime', () => {
    let state: WatchState = { streak: 0 };
    const delays: number[] = [];
    let now = 0;
    for (let i = 0; i < 4; i += 1) {
      const c = nextAction(state, 'crashed', now, policy);
      delays.push(c.state.restartAt! - now);
      now = c.state.restartAt!;
      // Started, alive briefly, crashed again.
      state = nextAction({ streak: c.state.streak }, 'alive', now, policy).state;
      now += 100;
    }
    expect(delays).toEqual([500, 1000, 2000, 4000]);
    const longUp = nextAction(nextAction(state, 'alive', now, policy).state, 'alive', now + 10_000, policy);
    expect(longUp.state.streak).toBe(0);
    expect(nextAction(longUp.state, 'crashed', now + 10_001, policy).state.restartAt).toBe(now + 10_001 + 500);
  });
  it('counts a crash once, not on every poll while the restart is pending', () => {
    const first = nextAction({ streak: 0 }, 'crashed', 0, policy);
    const again = nextAction(first.state, 'crashed', 100, policy);
    expect(again.crashed).toBe(false);
    expect(again.state).toEqual(first.state);
  });
});

describe('hasReadyLine', () => {
  const line = (o: Record<string, unknown>) => JSON.stringify(o);
  it('finds the ready line of the given pid only', () => {
    const text = [line({ level: 30, pid: 11, ready: true, msg: 'old process' }), line({ level: 30, pid: 12, msg: 'starting' }), ''].join('\n');
    expect(hasReadyLine(text, 11)).toBe(true);
    expect(hasReadyLine(text, 12)).toBe(false);
    expect(hasReadyLine(`${text}${line({ pid: 12, ready: true })}\n`, 12)).toBe(true);
  });
  it('ignores partial lines, non-JSON and a ready field that is not true', () => {
    expect(hasReadyLine('{"pid":5,"ready":true', 5)).toBe(false);
    expect(hasReadyLine('backend "ready":true pid 5', 5)).toBe(false);
    expect(hasReadyLine(line({ pid: 5, ready: 'true' }), 5)).toBe(false);
  });
});

describe('serviceCondition', () => {
  const base = { name: 'gateway', running: true, healthy: true, pidFilePresent: true, watchdogRunning: true };
  it('names each condition and the command that recovers it', () => {
    expect(serviceCondition(base)).toEqual({ state: 'healthy' });
    expect(serviceCondition({ ...base, healthy: false })).toMatchObject({ state: 'unhealthy', recovery: expect.stringContaining('npm run stack -- restart gateway') });
    expect(serviceCondition({ ...base, running: false, healthy: false, watchdogRunning: false })).toEqual({ state: 'crashed', recovery: 'npm start (starts it and the watchdog)' });
    expect(serviceCondition({ ...base, running: false, healthy: false, pidFilePresent: false, record: { restarts: 1, lastCrashAt: '2026-01-01T00:00:00Z' } }).state).toBe('crashed');
    expect(serviceCondition({ ...base, running: false, healthy: false, pidFilePresent: false })).toEqual({ state: 'stopped', recovery: 'npm start' });
  });
  it('points a service failing because its store is down at the store, not at a restart of itself', () => {
    const r = serviceCondition({ ...base, name: 'backend', healthy: false, storeDown: { name: 'redis', state: 'crashed' } });
    expect(r.state).toBe('unhealthy');
    expect(r.recovery).toMatch(/redis is crashed: recover redis first/);
    expect(r.recovery).not.toMatch(/restart backend/);
  });
  it('takes an old crash of a service stopped on purpose, with no watchdog running, for a stop', () => {
    expect(serviceCondition({ ...base, running: false, healthy: false, pidFilePresent: false, watchdogRunning: false, record: { restarts: 1, lastCrashAt: '2026-01-01T00:00:00Z' } }).state).toBe('stopped');
  });
});
