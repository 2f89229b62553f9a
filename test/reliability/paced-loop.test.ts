import { describe, expect, it } from 'vitest';
import { pacedLoop } from './paced-loop.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('pacedLoop', () => {
  it('sends at the rate on the clock while sends are slow, numbered from 0, and stop waits for those in flight', async () => {
    const started: number[] = [];
    const settled: number[] = [];
    // Every send takes 300 ms: a loop paced by answers would have sent one or two by 250 ms.
    const loop = pacedLoop(100, async (seq) => {
      started.push(seq);
      await sleep(300);
      settled.push(seq);
    });
    await sleep(250);
    expect(loop.inFlight()).toBeGreaterThanOrEqual(15);
    const t0 = Date.now();
    await loop.stop();
    const sent = started.length;
    expect(sent).toBeGreaterThanOrEqual(15);
    expect(sent).toBeLessThanOrEqual(35);
    expect(started).toEqual(Array.from({ length: sent }, (_, i) => i));
    expect([...settled].sort((a, b) => a - b)).toEqual(started);
    expect(loop.inFlight()).toBe(0);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(40);
    await sleep(50);
    expect(started).toHaveLength(sent);
  });

  it('keeps its pace when sends fail, and refuses a rate that is not positive', async () => {
    let calls = 0;
    const loop = pacedLoop(200, () => {
      calls += 1;
      return Promise.reject(new Error('down'));
    });
    await sleep(100);
    await loop.stop();
    expect(calls).toBeGreaterThanOrEqual(10);
    expect(() => pacedLoop(0, async () => undefined)).toThrow(/positive/);
    expect(() => pacedLoop(Number.NaN, async () => undefined)).toThrow(/positive/);
  });
});
