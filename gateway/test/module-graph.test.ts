import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

// The gateway's import graph, read from the sources: no module cycle, and the layering the
// delivery hub relies on (the broker never reaches up into the hub or the connections; the kinds
// module is a leaf). Type-only imports count too: a cycle of types is still a knot to untie.

const SRC = path.resolve(new URL('../src', import.meta.url).pathname);
const IMPORT = /^\s*(?:import|export)\s[^;]*?from\s+'(\.{1,2}\/[^']+)'/gm;

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []));
}

/** Module (path below src, without extension) → the gateway modules it imports. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sources(SRC)) {
    const from = path.relative(SRC, file).replace(/\.ts$/, '');
    const targets = [...readFileSync(file, 'utf8').matchAll(IMPORT)].map((m) => path.relative(SRC, path.resolve(path.dirname(file), m[1]!)).replace(/\.js$/, ''));
    graph.set(from, targets);
  }
  return graph;
}

/** Every cycle found by a depth-first walk, as the list of modules around it. */
function cycles(graph: Map<string, string[]>): string[][] {
  const found: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (node: string): void => {
    state.set(node, 'open');
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      if (state.get(next) === 'open') found.push([...stack.slice(stack.indexOf(next)), next]);
      else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(node, 'done');
  };
  for (const node of graph.keys()) if (!state.has(node)) visit(node);
  return found;
}

describe('gateway module graph', () => {
  const graph = importGraph();

  it('reads the sources it checks', () => {
    expect(graph.get('hub/delivery-hub')).toContain('broker/merge-replay');
    expect(graph.get('broker/redis-broker')).toContain('broker/merge-replay');
  });

  it('has no import cycle', () => {
    expect(cycles(graph)).toEqual([]);
  });

  it('has no cycle between folders either (broker, hub, connection, access, http, …)', () => {
    const folder = (module: string): string => module.split('/')[0]!;
    const folders = new Map<string, string[]>();
    for (const [from, targets] of graph) {
      const edges = folders.get(folder(from)) ?? [];
      for (const to of targets) if (folder(to) !== folder(from)) edges.push(folder(to));
      folders.set(folder(from), edges);
    }
    expect(cycles(folders)).toEqual([]);
  });

  it('keeps the broker below the hub and the connections, and the kinds a leaf', () => {
    const offending = [...graph].flatMap(([from, targets]) =>
      targets
        .filter((to) => (from.startsWith('broker/') && (to.startsWith('hub/') || to.startsWith('connection/'))) || from === 'connection-kinds')
        .map((to) => `${from} -> ${to}`),
    );
    expect(offending).toEqual([]);
  });
});
