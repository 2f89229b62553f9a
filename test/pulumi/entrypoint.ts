// Test harness: loads the Pulumi entrypoint the way Pulumi's Node language host does, but with
// the engine replaced by mocks. infra/index.test.ts runs it with the node arguments from
// Pulumi.yaml (`node --import tsx <this file> <entrypoint>`) and the stack config in
// PULUMI_CONFIG / PULUMI_CONFIG_SECRET_KEYS, as the CLI passes it. Prints one JSON line:
// {resources: [{type, name, inputs}], outputs} or {error, resources} (exit code 1).

import path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as pulumi from '@pulumi/pulumi';
import { installPulumiMocks } from '../pulumi-mocks.js';

const entry = process.argv[2];
if (!entry) throw new Error('usage: pulumi-entrypoint.ts <entrypoint.ts>');

// Mocks before the program is imported, as Pulumi's unit-testing guide requires.
const resources = installPulumiMocks({ project: 'replyx', stack: process.env.HARNESS_STACK ?? 'dev' });

async function resolveOutputs(value: unknown): Promise<unknown> {
  if (pulumi.Output.isInstance(value)) {
    return new Promise((resolve) => (value as pulumi.Output<unknown>).apply((v) => resolve(v)));
  }
  return value;
}

function report(err: unknown): void {
  console.log(JSON.stringify({ error: err instanceof Error ? err.message : String(err), runError: pulumi.RunError.isInstance(err), resources }));
  process.exitCode = 1;
}

// Pulumi's host reports errors from detached Output callbacks too (an unhandled rejection).
process.on('unhandledRejection', (err) => {
  report(err);
  process.exit(1);
});

try {
  // Same steps as @pulumi/pulumi/cmd/run for an ES module: import, take the default export if
  // it is the only one, call it when it is a function, await the result as the stack outputs.
  const mod = (await import(pathToFileURL(path.resolve(entry)).href)) as Record<string, unknown>;
  let program: unknown = mod;
  if (Object.getOwnPropertyDescriptor(mod, 'default') !== undefined) {
    if (Object.keys(mod).length !== 1) throw new Error('expected entrypoint module to have either a default export or named exports but not both');
    program = mod.default;
  }
  const exported = (typeof program === 'function' ? await (program as () => unknown)() : program) as Record<string, unknown>;
  await pulumi.runtime.disconnect();
  const outputs = Object.fromEntries(await Promise.all(Object.entries(exported).map(async ([k, v]) => [k, await resolveOutputs(v)] as const)));
  console.log(JSON.stringify({ resources, outputs }));
} catch (err) {
  await pulumi.runtime.disconnect();
  report(err);
}
