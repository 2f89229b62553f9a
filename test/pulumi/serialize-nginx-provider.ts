// Test harness, run as `node --import tsx <this file> <out.js>` exactly like the Pulumi program:
// serializes the nginx config provider the way pulumi.dynamic.Resource does and writes the
// module text that Pulumi's dynamic-provider host (plain Node, no tsx) will load.

import { writeFile } from 'node:fs/promises';
import * as pulumi from '@pulumi/pulumi';
import { nginxConfigFileProvider } from '../../infra/targets/docker/nginx-config-file.js';

const out = process.argv[2];
if (!out) throw new Error('usage: serialize-nginx-provider.ts <out.js>');
// Same call as @pulumi/pulumi/dynamic: serialize a thunk returning the provider.
const serialized = await pulumi.runtime.serializeFunction(() => nginxConfigFileProvider, { allowSecrets: true });
await writeFile(out, serialized.text);
console.log(JSON.stringify({ exportName: serialized.exportName, bytes: serialized.text.length }));
