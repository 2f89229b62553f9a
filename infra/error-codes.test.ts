import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CLIENT_ERROR_CODES } from '../client/src/error-codes.js';
import { GATEWAY_ERROR_CODES } from '../gateway/src/error-codes.js';
import { ERROR_CODES } from './error-codes.js';

// Holds the three code catalogues (toolkit, gateway and client), docs/errors.md and the source tree to
// each other, so a code cannot be emitted, documented or listed without the other two.

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SOURCE = /\.(?:ts|js|mjs|cjs|py|sh|lua|eta|sql)$/;
const PROSE = /\.md$/;
// A code is RPX_ plus upper-case words; a token ending in "_" is a prefix someone greps for.
const CODE = /\bRPX_[A-Z0-9_]*/g;

function files(dir: string, out: string[] = []): string[] {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.') || entry.name === 'node_modules' || entry.name === 'dist' || entry.name === 'coverage') continue;
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) files(full, out);
    else if (SOURCE.test(entry.name) || PROSE.test(entry.name)) out.push(full);
  }
  return out;
}

function codesIn(text: string): string[] {
  return [...text.matchAll(CODE)].map((m) => m[0]).filter((c) => !c.endsWith('_'));
}

/** The rows of docs/errors.md's table: code, meaning, what to do. */
function docRows(): { code: string; meaning: string; todo: string }[] {
  const text = readFileSync(path.join(ROOT, 'docs/errors.md'), 'utf8');
  return text
    .split('\n')
    .filter((l) => /^\| RPX_/.test(l))
    .map((l) => {
      const cells = l
        .slice(1, -1)
        .split(/(?<!\\)\|/)
        .map((c) => c.trim().replaceAll('\\|', '|'));
      return { code: cells[0]!, meaning: cells[1] ?? '', todo: cells[2] ?? '' };
    });
}

const catalogue: Record<string, string> = { ...ERROR_CODES, ...GATEWAY_ERROR_CODES, ...CLIENT_ERROR_CODES };
const all = Object.keys(catalogue).sort();

describe('error code catalogue', () => {
  it('keeps the toolkit, gateway and client codes apart and well formed', () => {
    expect(Object.keys(ERROR_CODES).filter((c) => c in GATEWAY_ERROR_CODES || c in CLIENT_ERROR_CODES)).toEqual([]);
    expect(Object.keys(GATEWAY_ERROR_CODES).filter((c) => c in CLIENT_ERROR_CODES)).toEqual([]);
    for (const code of all) expect(code, code).toMatch(/^RPX_[A-Z0-9]+(?:_[A-Z0-9]+)*$/);
    for (const [code, meaning] of Object.entries(catalogue)) expect(meaning.length, code).toBeGreaterThan(10);
  });

  it('docs/errors.md lists every code once, with the catalogue meaning and what to do', () => {
    const rows = docRows();
    expect(rows.map((r) => r.code).sort()).toEqual(all);
    expect(new Set(rows.map((r) => r.code)).size).toBe(rows.length);
    for (const row of rows) {
      expect(row.meaning, row.code).toBe(catalogue[row.code]);
      expect(row.todo.length, `${row.code}: what to do`).toBeGreaterThan(5);
    }
  });

  it('every RPX_ code in the source tree and the docs is in the catalogue', () => {
    const unknown = new Map<string, string>();
    for (const file of files(ROOT)) {
      for (const code of codesIn(readFileSync(file, 'utf8'))) if (!(code in catalogue)) unknown.set(code, path.relative(ROOT, file));
    }
    expect(Object.fromEntries(unknown)).toEqual({});
  });

  it('every catalogued code is emitted somewhere outside the catalogues, their test and the docs', () => {
    const own = new Set(['infra/error-codes.ts', 'gateway/src/error-codes.ts', 'infra/error-codes.test.ts']);
    const used = new Set<string>();
    for (const file of files(ROOT)) {
      const rel = path.relative(ROOT, file);
      if (!SOURCE.test(rel) || own.has(rel) || /\.test\.ts$/.test(rel)) continue;
      for (const code of codesIn(readFileSync(file, 'utf8'))) used.add(code);
    }
    expect(all.filter((c) => !used.has(c))).toEqual([]);
  });

  it('finds codes written by hand inside strings', () => {
    expect(codesIn('process.stderr.write(`error RPX_GATEWAY_START: ${m}`); grep RPX_GATEWAY_ in the log')).toEqual(['RPX_GATEWAY_START']);
  });
});
