// Pulumi entrypoint (Pulumi.yaml `main`), run by Pulumi as `node --import tsx infra/index.ts`.
// Pulumi calls the default export and uses what it returns as the stack outputs, which lets
// each target return its own outputs. The module must have no other export (Pulumi rejects a
// default export next to named ones).

import * as pulumi from '@pulumi/pulumi';
import { runReplyxProgram } from './program.js';

/** The replyx Pulumi program: validates the topology from the stack config, then deploys its target. */
export default function replyxProgram(): Promise<Record<string, unknown>> {
  return runReplyxProgram(pulumi.runtime.allConfig());
}
