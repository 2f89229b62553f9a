import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { canBind, ephemeralPortRange, freePortRange } from './ports.js';

describe('ephemeralPortRange', () => {
  it('reads the kernel range, and falls back to Linux defaults on garbage', () => {
    expect(ephemeralPortRange('32768\t60999\n')).toEqual({ low: 32_768, high: 60_999 });
    expect(ephemeralPortRange('')).toEqual({ low: 32_768, high: 60_999 });
  });
});

describe('freePortRange', () => {
  it('finds consecutive bindable ports below the ephemeral range, where outgoing connections never take them', async () => {
    const base = await freePortRange(3);
    expect(base + 2).toBeLessThan(ephemeralPortRange().low);
    expect(await Promise.all([base, base + 1, base + 2].map(canBind))).toEqual([true, true, true]);
  });

  it('skips a range with a port taken or excluded', async () => {
    const taken = net.createServer();
    const port = await freePortRange(1);
    await new Promise<void>((resolve) => taken.listen(port, '127.0.0.1', () => resolve()));
    try {
      // The first pick lands on the taken port, the second on an excluded one; the third is free.
      const [excluded, free] = [(await freePortRange(2, [port, port + 1])) + 1, await freePortRange(2, [port, port + 1])];
      const picks = [port, excluded - 1, free];
      const low = ephemeralPortRange().low;
      const span = low - 2 - 10_000;
      // The middle of each port's share of [0, 1): (k / span) * span can round to just below k.
      const random = () => (picks.shift()! - 10_000 + 0.5) / span;
      expect(await freePortRange(2, [excluded], random)).toBe(free);
    } finally {
      taken.close();
    }
  });
});
