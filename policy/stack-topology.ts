import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stackFilePath, topologyFromStackText, type Topology } from '../infra/topology/index.js';

/** The project directory: REPLYX_PROJECT_DIR, else the parent of this policy pack. */
export function projectDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.REPLYX_PROJECT_DIR ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
}

/** Reads `Pulumi.<stack>.yaml` of the project and validates its topology; undefined when absent. */
export function loadStackTopology(stack: string, dir: string = projectDir()): Topology | undefined {
  const file = stackFilePath(dir, stack);
  if (!existsSync(file)) return undefined;
  return topologyFromStackText(readFileSync(file, 'utf8'), path.basename(file)).topology;
}
