import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';

// The images the docker and aws targets build run a supported Node.js LTS, pinned to one exact
// release (a digest may be added through the NODE_IMAGE build argument; docs/security.md).

const DOCKERFILES = ['gateway/Dockerfile', 'examples/backend/Dockerfile'];
/** Even majors from 22 on are LTS lines; Node 20 reached end of life in April 2026. */
const SUPPORTED_LTS_MAJORS = [22, 24];

describe.each(DOCKERFILES)('%s', (file) => {
  it('builds every stage FROM one NODE_IMAGE: an exact release of a supported LTS line', async () => {
    const text = await readFile(new URL(`../../${file}`, import.meta.url), 'utf8');
    const froms = text.split('\n').filter((l) => l.startsWith('FROM '));
    expect(froms.length).toBeGreaterThan(0);
    for (const from of froms) expect(from).toMatch(/^FROM \$\{NODE_IMAGE\}( AS \w+)?$/);
    const image = /^ARG NODE_IMAGE=(\S+)$/m.exec(text)?.[1] ?? '';
    const m = /^node:(\d+)\.(\d+)\.(\d+)-[a-z]+-slim(@sha256:[0-9a-f]{64})?$/.exec(image);
    expect(m, image).not.toBeNull();
    expect(SUPPORTED_LTS_MAJORS).toContain(Number(m![1]));
  });
});
