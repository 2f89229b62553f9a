import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ReplyxError } from '../../infra/errors.js';
import { REPO_DIR } from '../../infra/targets/local/local-stack.js';
import { planLocalStack, type LocalPorts, type LocalSecrets, type LocalStackPlan } from '../../infra/targets/local/plan.js';
import { secretsFile } from '../../infra/targets/local/secrets.js';
import { planDockerStack } from '../../infra/targets/docker/plan.js';
import { dockerContainerNames } from '../../infra/render/service-hosts.js';
import { parseStackFile, stackFilePath, topologyFromStackText, type Target, type Topology } from '../../infra/topology/index.js';
import type { CommonFlags } from './cli.js';

// Which stack a command works on, and where its pieces are: the stack file, and for the local
// target the state directory (ports recorded by `npm start`, secrets, pid files, logs). Tests
// point --project-dir/--state-dir at a stack of their own, so they never touch the dev stack.

/** Endpoints of a running stack as seen from this machine. */
export interface StackEndpoints {
  readonly nginx: string;
  readonly backend: string;
  readonly gateway: string;
  readonly ws: string;
  readonly redisPort: number;
  readonly databaseUrl?: string;
}

/** Everything a command needs to know about its stack. */
export interface StackContext {
  readonly target: Target;
  readonly stack: string;
  readonly projectDir: string;
  readonly stackFile: string;
  /** Exact text of the stack file (rollback history keeps it byte for byte). */
  readonly stackText: string;
  /** The topology of the stack file (for local: with the ports the stack really runs on). */
  readonly topology: Topology;
  readonly endpoints: StackEndpoints;
  /** Local target only. */
  readonly local?: { readonly stateDir: string; readonly plan: LocalStackPlan; readonly secrets: LocalSecrets };
  /** Docker target only: container names and the nginx config file paths. */
  readonly docker?: { readonly containers: ReturnType<typeof dockerContainerNames>; readonly hostConfigFile: string; readonly containerConfigFile: string };
}

const TARGETS = ['local', 'docker', 'aws'] as const;
const DEFAULT_STACK: Record<Target, string> = { local: 'local', docker: 'dev', aws: 'aws' };

/** Picks target and stack name from the flags (pure). */
export function chooseStack(flags: Pick<CommonFlags, 'target' | 'stack'>): { target?: Target; stack: string } {
  if (flags.target !== undefined && !(TARGETS as readonly string[]).includes(flags.target)) {
    throw new ReplyxError('RPX_USAGE', `--target must be local, docker or aws, got "${flags.target}"`, 'pass --target local|docker|aws');
  }
  const target = flags.target as Target | undefined;
  if (flags.stack !== undefined && !/^[A-Za-z0-9_.-]{1,100}$/.test(flags.stack)) {
    throw new ReplyxError('RPX_USAGE', `--stack must be a stack name like "dev", got "${flags.stack}"`, 'pass --stack NAME for Pulumi.NAME.yaml');
  }
  return { ...(target ? { target } : {}), stack: flags.stack ?? DEFAULT_STACK[target ?? 'local'] };
}

async function readJson(file: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as unknown;
  } catch {
    return undefined;
  }
}

/** Reads the local stack's secrets; throws when the stack was never started in that state dir. */
export async function readLocalSecrets(stateDir: string): Promise<LocalSecrets> {
  const raw = (await readJson(secretsFile(stateDir))) as Partial<LocalSecrets> | undefined;
  const names = ['jwtSecret', 'publishKey', 'debugToken', 'siteTokenSecret', 'widgetTokenSecret'] as const;
  if (!raw || names.some((n) => typeof raw[n] !== 'string')) {
    throw new ReplyxError('RPX_STACK_NOT_STARTED', `no local stack state in ${stateDir} (secrets.json missing)`, 'start the stack with npm start (or pass --state-dir of a running stack)');
  }
  return { jwtSecret: raw.jwtSecret!, publishKey: raw.publishKey!, debugToken: raw.debugToken!, siteTokenSecret: raw.siteTokenSecret!, widgetTokenSecret: raw.widgetTokenSecret! };
}

/** Resolves the stack a command works on from its flags. */
export async function resolveContext(flags: CommonFlags): Promise<StackContext> {
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
  const base = { target, stack: chosen.stack, projectDir, stackFile, stackText };
  if (target === 'local') {
    // Same layout as `npm start`: .stack/ for the stack "local", .stack/<name>/ for any other.
    const defaultStateDir = chosen.stack === 'local' ? path.join(projectDir, '.stack') : path.join(projectDir, '.stack', chosen.stack);
    const stateDir = path.resolve(flags['state-dir'] ?? process.env.REPLYX_STATE_DIR ?? defaultStateDir);
    const secrets = await readLocalSecrets(stateDir);
    const recorded = (await readJson(path.join(stateDir, 'state.json'))) as { ports?: LocalPorts } | undefined;
    const plan = planLocalStack(fileTopology, { stateDir, repoDir: REPO_DIR, secrets, ...(recorded?.ports ? { ports: recorded.ports } : {}) });
    const t = plan.topology;
    return {
      ...base,
      topology: t,
      local: { stateDir, plan, secrets },
      endpoints: {
        nginx: `http://127.0.0.1:${t.nginx.port}`,
        backend: `http://127.0.0.1:${t.backend.port}`,
        gateway: `http://127.0.0.1:${t.gateway.port}`,
        ws: `ws://127.0.0.1:${t.nginx.port}`,
        redisPort: t.redis.port,
        databaseUrl: plan.databaseUrl,
      },
    };
  }
  const endpoints = {
    nginx: `http://127.0.0.1:${fileTopology.nginx.port}`,
    backend: `http://127.0.0.1:${fileTopology.backend.port}`,
    gateway: `http://127.0.0.1:${fileTopology.gateway.port}`,
    ws: `ws://127.0.0.1:${fileTopology.nginx.port}`,
    redisPort: fileTopology.redis.port,
  };
  if (target === 'docker') {
    // The docker target keeps its nginx config where `replyx-docker:stateDir` says (default .stack/docker/nginx).
    const stateDir = parseStackFile(stackText, path.basename(stackFile))['replyx-docker:stateDir'];
    const plan = planDockerStack(fileTopology, { projectRoot: projectDir, ...(typeof stateDir === 'string' ? { stateDir } : {}) });
    return { ...base, topology: fileTopology, endpoints, docker: { containers: dockerContainerNames(fileTopology), hostConfigFile: plan.nginxConfig.hostFile, containerConfigFile: plan.nginxConfig.containerFile } };
  }
  return { ...base, topology: fileTopology, endpoints };
}
