import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { REPO_DIR } from '../operate/stack.js';
import { editStackSettings, settingValue } from './edit.js';
import { topologyFromStackText } from './index.js';

const localText = readFileSync(`${REPO_DIR}/Pulumi.local.yaml`, 'utf8');
/** The error `fn` throws, message and listed problems together. */
function problem(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return `${(err as Error).message} ${JSON.stringify((err as { details?: unknown }).details ?? '')}`;
  }
  return 'no error';
}
const comments = (t: string) => t.split('\n').filter((l) => l.trim().startsWith('#'));

describe('editStackSettings (npm run stack -- set)', () => {
  it('writes dotted keys into their replyx: section and keeps every comment', () => {
    const out = editStackSettings(localText, [
      { key: 'gateway.heartbeatMs', value: 20000 },
      { key: 'backend.workers', value: 2 },
    ]);
    const t = topologyFromStackText(out, 'test').topology;
    expect(t.gateway.heartbeatMs).toBe(20000);
    expect(t.backend.workers).toBe(2);
    expect(comments(out)).toEqual(comments(localText));
    expect(out.split('\n').filter((l, i) => l !== localText.split('\n')[i])).toEqual(['    workers: 2', '    heartbeatMs: 20000']);
  });

  it('sets top-level keys and adds absent sections', () => {
    const out = editStackSettings('config:\n  replyx:target: local # kept\n', [
      { key: 'wsRoute', value: 'backend' },
      { key: 'backend.workers', value: 1 },
    ]);
    expect(out).toContain('# kept');
    expect(topologyFromStackText(out, 'test').topology).toMatchObject({ wsRoute: 'backend', backend: { workers: 1 } });
  });

  it('writes nothing invalid: unknown keys, values out of range, secrets, bad names', () => {
    expect(problem(() => editStackSettings(localText, [{ key: 'gateway.nope', value: 1 }]))).toMatch(/gateway\.nope/);
    expect(problem(() => editStackSettings(localText, [{ key: 'backend.workers', value: 0 }]))).toMatch(/backend\.workers/);
    expect(() => editStackSettings(localText, [{ key: 'jwtSecret', value: 'x' }])).toThrow(/secret/);
    expect(() => editStackSettings(localText, [{ key: 'gateway..port', value: 1 }])).toThrow(/not a setting name/);
    expect(() => editStackSettings('config:\n  replyx:backend: 3\n', [{ key: 'backend.workers', value: 1 }])).toThrow(/not a mapping/);
  });

  it('reads command-line values as the stack file would hold them', () => {
    expect(settingValue('20000')).toBe(20000);
    expect(settingValue('true')).toBe(true);
    expect(settingValue('backend')).toBe('backend');
    expect(settingValue('1m')).toBe('1m');
    expect(settingValue('[1, 2]')).toBe('[1, 2]');
  });
});
