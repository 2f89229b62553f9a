import { existsSync } from 'node:fs';
import { chown, open } from 'node:fs/promises';
import path from 'node:path';
import { execa, type Options } from 'execa';
import { ReplyxError, type ErrorCode } from '../errors.js';

// The one way library code runs other programs: argv arrays through execa (never a shell
// string), a result that says how the command ended instead of throwing on a non-zero exit,
// and long-running services started with their output appended to a log file. Operator code
// takes a CommandRunner so tests can answer for the Docker daemon, Pulumi and AWS.

/** Exit code and output of one command. */
export interface CommandResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Options of one command run. */
export interface RunOptions {
  /** Also forward the output to this process's terminal as it comes (for `pulumi up`). */
  readonly stream?: boolean;
}

/** Runs an argv array and resolves with its result (never rejects on a non-zero exit). */
export type CommandRunner = (argv: readonly string[], options?: RunOptions) => Promise<CommandResult>;

/** What to install when a command is missing, by program name. */
const INSTALL_HINTS: Readonly<Record<string, string>> = {
  aws: 'install the AWS CLI v2 and configure credentials (aws configure)',
  pulumi: 'install the Pulumi CLI (https://www.pulumi.com/docs/install/)',
  docker: 'install Docker, or run on the Docker host',
};

/**
 * A real runner: execa with an argv array. A missing program throws `missingCode` (the AWS
 * rollback keeps its documented RPX_AWS_CLI_MISSING) with what to install.
 */
export function createCommandRunner(missingCode: ErrorCode = 'RPX_MISSING_CLI'): CommandRunner {
  return async (argv, options = {}) => {
    const [command, ...args] = argv;
    if (command === undefined) throw new Error('empty command');
    const result = await execa(command, args, {
      reject: false,
      stdin: 'ignore',
      stdout: options.stream ? ['pipe', 'inherit'] : 'pipe',
      stderr: options.stream ? ['pipe', 'inherit'] : 'pipe',
      stripFinalNewline: false,
    });
    if (result.exitCode === undefined && (result.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
      throw new ReplyxError(missingCode, `${command} is not installed or not on PATH`, INSTALL_HINTS[command] ?? `install ${command} or run on the host that has it`, { cause: result.cause });
    }
    return { exitCode: result.exitCode ?? 1, stdout: String(result.stdout ?? ''), stderr: String(result.stderr ?? '') };
  };
}

/** The runner operator code uses unless a test passes its own. */
export const runCommand: CommandRunner = createCommandRunner();

/** The last `lines` lines of a command's output, for error messages. */
export function outputTail(result: CommandResult, lines = 2): string {
  return (result.stderr || result.stdout).trim().split('\n').slice(-lines).join(' | ');
}

/** Runs argv and throws `code` with the command's last output lines when it exits non-zero. */
export async function runChecked(run: CommandRunner, argv: readonly string[], code: ErrorCode, fix: string, options?: RunOptions): Promise<CommandResult> {
  const r = await run(argv, options);
  if (r.exitCode !== 0) {
    throw new ReplyxError(code, `${argv.slice(0, 4).join(' ')} failed (exit ${r.exitCode}): ${outputTail(r) || 'no output'}`, fix, { details: (r.stderr || r.stdout).trim().split('\n').slice(-5) });
  }
  return r;
}

/** Options of {@link startLogged}. */
export interface StartLoggedOptions {
  readonly cwd?: string;
  /** The whole environment of the process (nothing is inherited). */
  readonly env: NodeJS.ProcessEnv;
  /** Receives stdout and stderr, appended. */
  readonly logFile: string;
  /** Outlives this process (its own process group, not killed on exit): services of `npm start`. */
  readonly detached?: boolean;
  /** Run as this user/group (root starting Postgres); the log file is handed to them too. */
  readonly uid?: number;
  readonly gid?: number;
}

/** A process started by {@link startLogged}. */
export interface LoggedProcess {
  readonly pid: number;
  /** How it ended, once it has: an exit code or a signal name. */
  exited(): number | string | undefined;
  /** Resolves when it has ended. */
  readonly ended: Promise<void>;
  /** Sends a signal (SIGKILL when unset). */
  kill(signal?: NodeJS.Signals): void;
}

/**
 * Starts a long-running program with its output appended to a log file. The file descriptor is
 * handed to the child, so a detached service keeps logging after this process has exited.
 */
export async function startLogged(argv: readonly string[], options: StartLoggedOptions): Promise<LoggedProcess> {
  const [command, ...args] = argv;
  if (command === undefined) throw new Error('empty command');
  const log = await open(options.logFile, 'a');
  // execa hands any descriptor number straight to the child (its types only spell out 3-9).
  const fd = log.fd as 3;
  try {
    if (options.uid !== undefined) await chown(options.logFile, options.uid, options.gid ?? options.uid);
    const execaOptions: Options = {
      env: options.env,
      extendEnv: false,
      detached: options.detached ?? false,
      cleanup: !options.detached,
      reject: false,
      stdio: ['ignore', fd, fd],
      ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
      ...(options.uid !== undefined ? { uid: options.uid, gid: options.gid ?? options.uid } : {}),
    };
    const child = execa(command, args, execaOptions);
    let outcome: number | string | undefined;
    const ended = child.then((r) => {
      outcome = r.exitCode ?? r.signal ?? 'unknown';
    });
    if (options.detached) child.unref();
    if (child.pid === undefined) {
      await ended;
      throw new ReplyxError('RPX_SPAWN_FAILED', `could not start ${command}`, `check that ${command} is installed and executable`);
    }
    return { pid: child.pid, exited: () => outcome, ended, kill: (signal = 'SIGKILL') => void child.kill(signal) };
  } finally {
    await log.close();
  }
}

/** Resolves an OS binary, searching PATH and Debian's versioned Postgres directory. */
export function findBinary(name: string): string | undefined {
  const dirs = (process.env.PATH ?? '').split(':');
  dirs.push('/usr/sbin', '/usr/local/sbin', '/sbin');
  for (const dir of dirs) {
    const candidate = path.join(dir, name);
    if (existsSync(candidate)) return candidate;
  }
  for (const v of ['17', '16', '15', '14', '13']) {
    const candidate = `/usr/lib/postgresql/${v}/bin/${name}`;
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

