import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseStackFile, topologySchema, CONFIG_NAMESPACE } from '../topology/index.js';

// The README's docker and aws deploy steps start from a fresh machine. This holds them to the
// repository: the stack names have stack files of the right target, every config key exists,
// every plugin install names a provider package of package.json at its pinned version, and the
// steps a fresh machine needs (login, passphrase, npm ci) are there.

const root = new URL('../../', import.meta.url);
const read = (file: string) => readFileSync(new URL(file, root), 'utf8');
const readme = read('README.md');
const pkg = JSON.parse(read('package.json')) as { devDependencies: Record<string, string> };

/** The shell lines of the first ```sh block under a README heading, comments stripped. */
function steps(heading: string): string[] {
  const start = readme.indexOf(`\n## ${heading}\n`);
  expect(start, heading).toBeGreaterThan(0);
  const section = readme.slice(start + 1, readme.indexOf('\n## ', start + 1));
  const block = /```sh\n([\s\S]*?)```/.exec(section);
  expect(block, `${heading}: a sh block`).not.toBeNull();
  return block![1]!
    .split('\n')
    .map((l) => l.replace(/\s+#.*$/, '').trim())
    .filter((l) => l.length > 0);
}

/** The provider plugins the program's packages name: @pulumi packages marked as resource providers. */
function providerPackages(): Map<string, string> {
  const out = new Map<string, string>();
  for (const [name, version] of Object.entries(pkg.devDependencies)) {
    if (!name.startsWith('@pulumi/')) continue;
    const meta = JSON.parse(read(`node_modules/${name}/package.json`)) as { pulumi?: { resource?: boolean; name?: string } };
    if (meta.pulumi?.resource) out.set(meta.pulumi.name ?? name.slice('@pulumi/'.length), version);
  }
  return out;
}

/** Whether `replyx:<key>` (with --path, `replyx:section.key`) is a key of the topology schema. */
function isTopologyKey(key: string): boolean {
  const [section, field] = key.split('.');
  const shape = topologySchema.shape as Record<string, { def: { innerType?: { shape?: Record<string, unknown> } } }>;
  if (!(section! in shape)) return false;
  if (field === undefined) return true;
  return field in (shape[section!]!.def.innerType?.shape ?? {});
}

const DEPLOYS = [
  { heading: 'Deploy to a Docker host', stack: 'dev', target: 'docker' },
  { heading: 'Deploy to AWS', stack: 'aws', target: 'aws' },
] as const;

describe.each(DEPLOYS)('README: $heading', ({ heading, stack, target }) => {
  const lines = steps(heading);

  it('starts from a fresh machine: Pulumi CLI, local login, secrets passphrase, npm ci, then stack init and up', () => {
    const order = ['get.pulumi.com', 'pulumi login --local', 'export PULUMI_CONFIG_PASSPHRASE=', 'npm ci', `pulumi stack init ${stack}`, `pulumi up --stack ${stack}`];
    const at = order.map((step) => lines.findIndex((l) => l.includes(step)));
    for (const [i, step] of order.entries()) expect(at[i], step).toBeGreaterThanOrEqual(0);
    expect([...at].sort((a, b) => a - b)).toEqual(at);
  });

  it('installs every provider plugin at the version package.json pins', () => {
    const providers = providerPackages();
    expect([...providers.keys()].sort()).toEqual(['aws', 'docker', 'random']);
    const installs = lines.filter((l) => l.startsWith('pulumi plugin install'));
    const named = new Map(installs.map((l) => {
      const m = /^pulumi plugin install resource ([a-z-]+) v?(\d+\.\d+\.\d+)$/.exec(l);
      expect(m, l).not.toBeNull();
      return [m![1]!, m![2]!] as const;
    }));
    // The Node.js language host asks for every provider package of the program, whatever the stack uses.
    expect(Object.fromEntries(named)).toEqual(Object.fromEntries(providers));
  });

  it(`names stack ${stack} only, whose stack file targets ${target}`, () => {
    for (const l of lines) for (const m of l.matchAll(/(?:--stack|stack init) ([\w-]+)/g)) expect(m[1], l).toBe(stack);
    const copy = lines.map((l) => /^cp (\S+) Pulumi\.([\w-]+)\.yaml$/.exec(l)).find((m) => m !== null);
    const file = copy ? copy[1]! : `Pulumi.${stack}.yaml`;
    if (copy) expect(copy[2]).toBe(stack);
    expect(existsSync(new URL(file, root)), file).toBe(true);
    expect(parseStackFile(read(file), file)[`${CONFIG_NAMESPACE}:target`]).toBe(target);
  });

  it('sets only config keys that exist', () => {
    for (const l of lines.filter((x) => x.startsWith('pulumi config set'))) {
      const key = l.split(/\s+/).find((w) => /^[a-z]+:/.test(w))!;
      expect(key, l).toBeDefined();
      const [namespace, name] = key.split(':') as [string, string];
      if (namespace === CONFIG_NAMESPACE) expect(isTopologyKey(name), l).toBe(true);
      else expect(['aws:region'], l).toContain(key);
    }
  });
});

describe('README: Deploy to a Docker host', () => {
  it('probes the port the dev stack publishes', () => {
    const port = (parseStackFile(read('Pulumi.dev.yaml'), 'Pulumi.dev.yaml')[`${CONFIG_NAMESPACE}:nginx`] as { port: number }).port;
    expect(steps('Deploy to a Docker host')).toContain(`curl http://localhost:${port}/health`);
  });
});
