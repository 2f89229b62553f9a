import { mkdtemp, readFile, rm, writeFile, chmod } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseDocument } from 'yaml';
import { REPO_DIR, startLocalStack, type LocalStackHandle } from '../infra/targets/local/local-stack.js';
import { secretsFile } from '../infra/targets/local/secrets.js';
import { parseStackFile, topologyInputFromConfig, type TopologyInput } from '../infra/topology/index.js';

// Test support: a real local stack on free ports in a temp dir, plus a temp project dir holding
// a copy of Pulumi.local.yaml with those ports, so the operator scripts run against it with
// --project-dir/--state-dir and never touch the developer's stack.

/** A running stack the operator scripts can be pointed at. */
export interface OperatorTestStack {
  readonly handle: LocalStackHandle;
  readonly projectDir: string;
  readonly stateDir: string;
  readonly stackFile: string;
  /** Flags that select this stack: --stack local --project-dir ... --state-dir ... */
  readonly flags: readonly string[];
  stop(): Promise<void>;
}

/** Starts a local stack from the repo's Pulumi.local.yaml (plus `patch`) on free ports. */
export async function startOperatorTestStack(patch: (doc: ReturnType<typeof parseDocument>) => void = () => undefined): Promise<OperatorTestStack> {
  const projectDir = await mkdtemp(path.join(os.tmpdir(), 'replyx-ops-project-'));
  await chmod(projectDir, 0o755);
  const doc = parseDocument(await readFile(path.join(REPO_DIR, 'Pulumi.local.yaml'), 'utf8'));
  patch(doc);
  const input = topologyInputFromConfig(parseStackFile(doc.toString(), 'test')) as TopologyInput;
  const handle = await startLocalStack({ topology: input, logLevel: 'info' });
  try {
    const ports = handle.ports;
    doc.setIn(['config', 'replyx:backend', 'port'], ports.backend);
    doc.setIn(['config', 'replyx:gateway', 'port'], ports.gateway);
    doc.setIn(['config', 'replyx:nginx', 'port'], ports.nginx);
    doc.setIn(['config', 'replyx:redis', 'port'], ports.redis);
    doc.setIn(['config', 'replyx:postgres', 'port'], ports.postgres);
    if (ports.prometheus !== undefined) doc.setIn(['config', 'replyx:monitoring', 'prometheusPort'], ports.prometheus);
    const stackFile = path.join(projectDir, 'Pulumi.local.yaml');
    await writeFile(stackFile, doc.toString());
    await writeFile(secretsFile(handle.dir), `${JSON.stringify(handle.secrets)}\n`, { mode: 0o600 });
    return {
      handle,
      projectDir,
      stateDir: handle.dir,
      stackFile,
      flags: ['--stack', 'local', '--project-dir', projectDir, '--state-dir', handle.dir],
      async stop() {
        await handle.stop();
        await rm(projectDir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await handle.stop();
    await rm(projectDir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * The environment an operator's shell has for this stack: what the runbooks' `bash local`
 * commands read (project and state dirs, every port), nothing inherited that could point
 * them elsewhere.
 */
export function operatorEnv(stack: OperatorTestStack): NodeJS.ProcessEnv {
  const p = stack.handle.ports;
  return {
    ...process.env,
    FORCE_COLOR: '0',
    REPLYX_PROJECT_DIR: stack.projectDir,
    REPLYX_STATE_DIR: stack.stateDir,
    REPLYX_NGINX_PORT: String(p.nginx),
    REPLYX_BACKEND_PORT: String(p.backend),
    REPLYX_GATEWAY_PORT: String(p.gateway),
    REPLYX_REDIS_PORT: String(p.redis),
    REPLYX_POSTGRES_PORT: String(p.postgres),
    ...(p.prometheus !== undefined ? { REPLYX_PROMETHEUS_PORT: String(p.prometheus) } : {}),
  };
}
