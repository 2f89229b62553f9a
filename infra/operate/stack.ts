import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ReplyxError } from '../errors.js';
import { isStackName, stackFilePath, topologyFromStackText, type Target, type Topology } from '../topology/index.js';
import type { CommonFlags } from './cli.js';
import type { StackEndpoints, TargetSurface } from './surface.js';

// Which stack a command works on: the stack file, its target, and that target's surface. Tests
// point --project-dir/--state-dir at a stack of their own, so they never touch the dev stack.

/** This checkout: where the stack files and the node services' sources are. */
export const REPO_DIR = fileURLToPath(new URL('../../', import.meta.url));

/** A stack file as read from disk. */
export interface StackFile {
  readonly target: Target;
  readonly stack: string;
  readonly projectDir: string;
  readonly stackFile: string;
  /** Exact text of the stack file (rollback history keeps it byte for byte). */
  readonly stackText: string;
  /** The topology the stack file describes. */
  readonly fileTopology: Topology;
}

/** Everything a command needs to know about its stack. */
export interface StackContext {
  readonly target: Target;
  readonly stack: string;
  readonly projectDir: string;
  readonly stackFile: string;
  readonly stackText: string;
  /** The topology the stack runs (for local: with the ports the stack really runs on). */
  readonly topology: Topology;
  readonly endpoints: StackEndpoints;
  readonly surface: TargetSurface;
}

/** The default stack of each target; typed by the schema's targets, so a new target must name one. */
const DEFAULT_STACK: Readonly<Record<Target, string>> = { local: 'local', docker: 'dev', aws: 'aws' };
const TARGETS = Object.keys(DEFAULT_STACK) as Target[];

/** Throws RPX_USAGE unless `stack` is a stack name (no path, no shell characters). */
export function checkStackName(stack: string, fix = 'pass --stack NAME for Pulumi.NAME.yaml'): string {
  if (!isStackName(stack)) throw new ReplyxError('RPX_USAGE', `--stack must be a stack name like "dev", got "${stack}"`, fix);
  return stack;
}

/** Picks target and stack name from the flags (pure). */
export function chooseStack(flags: Pick<CommonFlags, 'target' | 'stack'>): { target?: Target; stack: string } {
  if (flags.target !== undefined && !(TARGETS as readonly string[]).includes(flags.target)) {
    throw new ReplyxError('RPX_USAGE', `--target must be ${TARGETS.slice(0, -1).join(', ')} or ${TARGETS.at(-1)}, got "${flags.target}"`, `pass --target ${TARGETS.join('|')}`);
  }
  const target = flags.target as Target | undefined;
  if (flags.stack !== undefined) checkStackName(flags.stack);
  return { ...(target ? { target } : {}), stack: flags.stack ?? DEFAULT_STACK[target ?? 'local'] };
}

/** The state directory of a stack: `.stack/` for the stack "local", `.stack/<stack>/` for any other. */
export function stateDirFor(opts: { readonly stack?: string; readonly stateDir?: string; readonly projectDir?: string }): string {
  if (opts.stateDir) return path.resolve(opts.stateDir);
  const base = path.join(opts.projectDir ?? REPO_DIR, '.stack');
  const stack = opts.stack ?? 'local';
  return stack === 'local' ? base : path.join(base, stack);
}

/** Reads the stack file the flags name and checks it is for the target they name. */
export async function readStackFile(flags: CommonFlags): Promise<StackFile> {
  const chosen = chooseStack(flags);
  const projectDir = path.resolve(flags['project-dir'] ?? process.env.REPLYX_PROJECT_DIR ?? REPO_DIR);
  const stackFile = stackFilePath(projectDir, chosen.stack);
  if (!existsSync(stackFile)) {
    throw new ReplyxError('RPX_STACK_FILE_MISSING', `no stack file ${stackFile}`, `pass --stack NAME of an existing Pulumi.NAME.yaml in ${projectDir}`);
  }
  const stackText = await readFile(stackFile, 'utf8');
  const fileTopology = topologyFromStackText(stackText, path.basename(stackFile)).topology;
  const target = chosen.target ?? fileTopology.target;
  if (fileTopology.target !== target) {
    throw new ReplyxError('RPX_TARGET_MISMATCH', `${path.basename(stackFile)} is for target "${fileTopology.target}", not "${target}"`, `pass --stack of a ${target} stack, or --target ${fileTopology.target}`);
  }
  return { target, stack: chosen.stack, projectDir, stackFile, stackText, fileTopology };
}

/**
 * The surface of a stack's target. Each target module is loaded only when used: the AWS one
 * pulls in @pulumi/aws, which takes seconds.
 */
export async function surfaceFor(file: StackFile, options: { readonly stateDir?: string } = {}): Promise<TargetSurface> {
  switch (file.target) {
    case 'local':
      return (await import('../targets/local/surface.js')).localSurface(file, stateDirFor({ stack: file.stack, projectDir: file.projectDir, ...(options.stateDir ? { stateDir: options.stateDir } : {}) }));
    case 'docker':
      return (await import('../targets/docker/surface.js')).dockerSurface(file);
    case 'aws':
      return (await import('../targets/aws/surface.js')).awsSurface(file);
  }
}

/** Resolves the stack a command works on from its flags. */
export async function resolveContext(flags: CommonFlags): Promise<StackContext> {
  const file = await readStackFile(flags);
  const stateDir = flags['state-dir'] ?? process.env.REPLYX_STATE_DIR;
  const surface = await surfaceFor(file, stateDir !== undefined ? { stateDir } : {});
  return { target: file.target, stack: file.stack, projectDir: file.projectDir, stackFile: file.stackFile, stackText: file.stackText, topology: surface.topology, endpoints: surface.describe().endpoints, surface };
}

/** The same stack with another topology (a change's target state): endpoints stay where they are. */
export function withTopology(ctx: StackContext, topology: Topology): StackContext {
  return { ...ctx, topology };
}
