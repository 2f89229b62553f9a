import path from 'node:path';
import { findBinary } from '../../processes/run.js';
import type { StackContext } from '../stack.js';
import { writeAtomic } from './history.js';
import { pulumiConfigSetArgv, type RollbackChange } from './plan.js';
import type { CommandRunner } from '../../processes/run.js';

/**
 * Persists a rollback in the stack config so the next `pulumi up`/`npm start` keeps it: with the
 * Pulumi CLI, `pulumi config set [--path]`; without it (or for an undo, which must restore the
 * exact previous bytes), the stack file text edited with the yaml Document API.
 */
export async function persistStackChange(ctx: StackContext, toText: string, change: RollbackChange | 'undo', run: CommandRunner, warnings: string[], hasPulumi = findBinary('pulumi') !== undefined): Promise<string> {
  if (change !== 'undo' && hasPulumi) {
    let failed: string | undefined;
    for (const argv of pulumiConfigSetArgv(ctx.stack, change)) {
      const r = await run(['pulumi', '--cwd', ctx.projectDir, ...argv.slice(1)]);
      if (r.exitCode !== 0) {
        failed = (r.stderr || r.stdout).trim().split('\n').pop() ?? `exit ${r.exitCode}`;
        break;
      }
    }
    if (failed === undefined) return `pulumi config set (${path.basename(ctx.stackFile)})`;
    warnings.push(`pulumi config set failed (${failed}); edited the stack file instead`);
  }
  await writeAtomic(ctx.stackFile, toText);
  return `${path.basename(ctx.stackFile)} ${change === 'undo' ? 'restored byte for byte' : 'updated (comments kept)'}`;
}
