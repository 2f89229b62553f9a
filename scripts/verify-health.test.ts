import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';

// `npm run health`'s flags for a customer's widget origin: both or neither, the assistant an integer.
// The probe itself runs against live stacks (runbooks/domain-4003.md's drill, test/drills/routing.live.test.ts).

const health = (...args: string[]) =>
  execa(process.execPath, ['--import', 'tsx', 'scripts/verify-health.ts', ...args], { cwd: path.resolve(import.meta.dirname, '..'), stdin: 'ignore', reject: false });

describe('npm run health -- --widget-origin/--widget-assistant', () => {
  it('documents both flags and refuses one without the other or a non-integer assistant, as one usage line', async () => {
    const [help, originOnly, assistantOnly, badId] = await Promise.all([
      health('--help'),
      health('--widget-origin', 'https://shop.example.org'),
      health('--widget-assistant', '3'),
      health('--widget-assistant', 'three', '--widget-origin', 'https://shop.example.org'),
    ]);
    expect(help.exitCode).toBe(0);
    expect(help.stdout).toContain('--widget-origin ORIGIN');
    expect(help.stdout).toContain('--widget-assistant ID');
    for (const r of [originOnly, assistantOnly]) {
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toMatch(/RPX_USAGE.*--widget-origin and --widget-assistant go together/);
    }
    expect(badId.exitCode).toBe(1);
    expect(badId.stderr).toMatch(/RPX_USAGE.*--widget-assistant must be an integer/);
  }, 60_000);
});
