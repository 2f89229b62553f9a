import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { buildDemoPages } from '../build.js';
import { applyEvent, fromHistory, isMessageRow, resumeAfter, type MessageRow } from '../src/message-list.js';

// The demo pages' pure rules (what is shown, where to resume) and their build: every page's
// bundle is written, self-contained, and the sources type-check against browser globals only.

const row = (id: number, eventId: string | null, text = `m${id}`): MessageRow => ({ id, dialog_id: 7, sender: 'admin', text, event_id: eventId });

describe('message list', () => {
  it('shows history in id order, then live events by upsert, counting deliveries', () => {
    let list = fromHistory([row(3, '30-0'), row(1, '10-0')]);
    expect(list.map((m) => [m.id, m.deliveries])).toEqual([
      [1, 0],
      [3, 0],
    ]);
    list = applyEvent(list, row(2, '20-0'), '20-0');
    list = applyEvent(list, row(4, '40-0'), '40-0');
    expect(list.map((m) => [m.id, m.deliveries])).toEqual([
      [1, 0],
      [2, 1],
      [3, 0],
      [4, 1],
    ]);
    // An event held during a refetch that the answer already had: still one row.
    list = applyEvent(list, row(3, '30-0'), '30-0');
    // The same event twice (a client bug): one row, counted twice, so a test can see it.
    list = applyEvent(list, row(4, '40-0'), '40-0');
    expect(list.map((m) => [m.id, m.deliveries])).toEqual([
      [1, 0],
      [2, 1],
      [3, 1],
      [4, 2],
    ]);
  });

  it('resumes after the newest event id shown (numeric order), or nothing when none was published', () => {
    expect(resumeAfter(fromHistory([row(1, '9-0'), row(2, '10-0'), row(3, null)]))).toBe('10-0');
    expect(resumeAfter(fromHistory([row(1, '1732780000000-2'), row(2, '1732780000000-10')]))).toBe('1732780000000-10');
    expect(resumeAfter(fromHistory([row(1, null)]))).toBeUndefined();
    expect(resumeAfter([])).toBeUndefined();
  });

  it('takes only message-shaped event data', () => {
    expect(isMessageRow(row(1, '1-0'))).toBe(true);
    for (const bad of [null, 'x', { id: 1, text: 'a' }, { id: 1.5, text: 'a', sender: 'admin' }, { text: 'hi' }]) expect(isMessageRow(bad)).toBe(false);
  });
});

describe('build', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  it('writes each page with its self-contained bundle', async () => {
    const out = await mkdtemp(path.join(os.tmpdir(), 'replyx-demo-'));
    dirs.push(out);
    const files = await buildDemoPages(out);
    expect(files).toEqual(['demo.css', 'index.html', 'operator.html', 'operator.js', 'site.html', 'site.js', 'widget.html', 'widget.js']);
    for (const page of ['operator', 'widget', 'site']) {
      expect(await readFile(path.join(out, `${page}.html`), 'utf8')).toContain(`<script type="module" src="${page}.js"></script>`);
      const js = await readFile(path.join(out, `${page}.js`), 'utf8');
      expect(js).not.toMatch(/(^|[;}])\s*import\s*[\w{*"']|\brequire\(/m);
    }
    // The widget carries the client: the subprotocol prefix is in its bundle.
    expect(await readFile(path.join(out, 'widget.js'), 'utf8')).toContain('replyx.token.');
  });

  it('type-checks with browser globals only (lib DOM, no @types/node)', async () => {
    const tsc = path.resolve(import.meta.dirname, '../../../node_modules/typescript/bin/tsc');
    await expect(promisify(execFile)(process.execPath, [tsc, '--noEmit', '-p', path.resolve(import.meta.dirname, '../tsconfig.json')])).resolves.toBeDefined();
  }, 60_000);
});
