import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { topologySchema } from '../topology/schema.js';
import { renderConfigReference, replaceConfigReference } from './config-reference.js';

describe('configuration reference', () => {
  const reference = renderConfigReference();

  it('documents every topology key with its default', () => {
    for (const [section, schema] of Object.entries(topologySchema.shape)) {
      const shape = (schema as { def: { innerType?: { shape?: Record<string, unknown> } } }).def.innerType?.shape;
      if (shape) {
        for (const key of Object.keys(shape)) expect(reference).toContain(`| \`${section}.${key}\` |`);
      } else {
        expect(reference).toContain(`| \`${section}\` |`);
      }
    }
    expect(reference).toContain('| `backend.workers` | integer 1..64 | `4` |');
  });

  it('README.md carries the current reference (run npm run docs:config after changing the schema)', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    expect(replaceConfigReference(readme, reference)).toBe(readme);
  });
});
