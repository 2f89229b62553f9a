#!/usr/bin/env tsx
// `npm run docs:config`: rewrites README.md's configuration reference from the topology schema.
import { readFile, writeFile } from 'node:fs/promises';
import { replaceConfigReference } from '../infra/docs/config-reference.js';

const file = new URL('../README.md', import.meta.url);
const before = await readFile(file, 'utf8');
const after = replaceConfigReference(before);
if (after === before) {
  console.log('README.md configuration reference is up to date');
} else {
  await writeFile(file, after);
  console.log('README.md configuration reference rewritten');
}
