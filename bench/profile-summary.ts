#!/usr/bin/env tsx
// Summarises a V8 .cpuprofile (from `npm run bench -- --profile`) into self time per function
// and per file, so a hot path can be named precisely (file:line, function) without DevTools.
// Usage: npx tsx bench/profile-summary.ts <file.cpuprofile> [top=25]
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The parts of a V8 CPU profile this summary reads. */
export interface CpuProfile {
  readonly nodes: readonly { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: readonly number[] }[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
  readonly startTime: number;
  readonly endTime: number;
}

/** Self time of one function or file. */
export interface SelfTime {
  readonly name: string;
  readonly ms: number;
  readonly pct: number;
}

/** Self time per function (`name file:line`) and per file, largest first. */
export function summariseProfile(profile: CpuProfile, root = ''): { total: number; functions: SelfTime[]; files: SelfTime[] } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const fn = new Map<string, number>();
  const file = new Map<string, number>();
  let total = 0;
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)?.callFrame;
    if (!frame) continue;
    total += us;
    const url = frame.url.startsWith('file://') ? fileURLToPath(frame.url) : frame.url;
    const where = url ? (root && url.startsWith(root) ? path.relative(root, url) : url) : '(native)';
    const key = `${frame.functionName || '(anonymous)'} ${where}${url ? `:${frame.lineNumber + 1}` : ''}`;
    fn.set(key, (fn.get(key) ?? 0) + us);
    file.set(where, (file.get(where) ?? 0) + us);
  }
  const rank = (m: Map<string, number>) =>
    [...m.entries()].sort((a, b) => b[1] - a[1]).map(([name, us]) => ({ name, ms: Math.round(us / 100) / 10, pct: total > 0 ? Math.round((us / total) * 1000) / 10 : 0 }));
  return { total: Math.round(total / 1000), functions: rank(fn), files: rank(file) };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const [file, topRaw] = process.argv.slice(2);
  if (!file) {
    console.error('usage: npx tsx bench/profile-summary.ts <file.cpuprofile> [top=25]');
    process.exit(2);
  }
  const top = Number(topRaw ?? 25);
  const summary = summariseProfile(JSON.parse(await readFile(file, 'utf8')) as CpuProfile, process.cwd());
  console.log(`total sampled: ${summary.total} ms`);
  console.log('\nself time by function:');
  for (const f of summary.functions.slice(0, top)) console.log(`${f.pct.toFixed(1).padStart(5)} %  ${f.ms.toFixed(1).padStart(8)} ms  ${f.name}`);
  console.log('\nself time by file:');
  for (const f of summary.files.slice(0, top)) console.log(`${f.pct.toFixed(1).padStart(5)} %  ${f.ms.toFixed(1).padStart(8)} ms  ${f.name}`);
}
