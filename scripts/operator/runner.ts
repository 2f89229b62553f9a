import { $ } from 'zx';
import { ReplyxError, type ErrorCode } from '../../infra/errors.js';

// Every external command of the operator scripts goes through one runner that takes an argv
// array (zx quotes each element), so no command is ever built as a shell string, and tests
// swap in a recording runner for the Docker daemon and Pulumi.

/** Exit code and output of one command. */
export interface CommandResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs an argv array and resolves with its result (never rejects on a non-zero exit). */
export type CommandRunner = (argv: readonly string[]) => Promise<CommandResult>;

/** The real runner: zx with nothrow and quiet output. */
export const zxRunner: CommandRunner = async (argv) => {
  if (argv.length === 0) throw new Error('empty command');
  try {
    const out = await $({ nothrow: true, quiet: true })`${argv}`;
    return { exitCode: out.exitCode ?? 1, stdout: out.stdout, stderr: out.stderr };
  } catch (err) {
    throw new ReplyxError('RPX_MISSING_CLI', `cannot run ${argv[0]}: ${(err as Error).message.split('\n')[0]}`, `install ${argv[0]} or run on the host that has it`, { cause: err });
  }
};

/** Runs argv and throws `code` with the command's last output line when it exits non-zero. */
export async function runChecked(run: CommandRunner, argv: readonly string[], code: ErrorCode, fix: string): Promise<CommandResult> {
  const r = await run(argv);
  if (r.exitCode !== 0) {
    const last = (r.stderr || r.stdout).trim().split('\n').slice(-2).join(' | ');
    throw new ReplyxError(code, `${argv.slice(0, 4).join(' ')} failed (exit ${r.exitCode}): ${last || 'no output'}`, fix);
  }
  return r;
}
