import { execa } from 'execa';
import { describe, expect, it } from 'vitest';

// The verified-token cache keeps tokens, not the handshake headers they were sliced from: with
// 16 KiB headers, keying by the slice kept each whole header (about 16 KiB per token).

describe('verified-token cache memory', () => {
  it('keeps well under 2 KiB per remembered token when each token came in a 16 KiB header', async () => {
    const child = new URL('./token-cache-child.ts', import.meta.url).pathname;
    const { stdout } = await execa(process.execPath, ['--expose-gc', '--import', 'tsx', child, '1000', '16384']);
    const { remembered, bytesPerToken } = JSON.parse(stdout) as { remembered: number; bytesPerToken: number };
    expect(remembered).toBe(1000);
    expect(bytesPerToken).toBeLessThan(2048);
  });
});
