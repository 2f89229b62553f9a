// The Pulumi program behind infra/index.ts: validate the topology from the stack config before
// anything is registered, then hand it to the target. Kept apart from the entrypoint so tests
// can run it under mocks with a config of their choosing.

import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as pulumi from '@pulumi/pulumi';
import { ReplyxError, formatErrorForCli } from './errors.js';
import { assertArchitecture } from './rules/index.js';
import { ReplyxSecrets } from './secrets.js';
import { ReplyxDockerStack } from './targets/docker/stack.js';
import { topologyFromPulumiConfig, type Topology, type TopologyIssue, type ValidatedTopology } from './topology/index.js';

/** Config namespace of Docker-target settings that are about the host, not the topology. */
export const DOCKER_CONFIG_NAMESPACE = 'replyx-docker';

/** What a target module (`infra/targets/<target>/index.ts`) exports for the program to call. */
export interface TargetModule {
  /** Creates the target's resources and returns the stack outputs. */
  deploy(args: { readonly topology: Topology; readonly warnings: readonly TopologyIssue[] }): Promise<Record<string, unknown>> | Record<string, unknown>;
}

/** Stack outputs of the Docker target: the component's public outputs, plus which secrets were generated. */
export type DockerStackOutputs = Pick<ReplyxDockerStack, 'publicUrl' | 'containerNames' | 'networkName' | 'nginxConfigFile' | 'wsRoute' | 'topologyChecksum'> & {
  readonly target: 'docker';
  /** Names (never values) of the secrets generated because the config lacked them. */
  readonly generatedSecrets: readonly string[];
  /** Prometheus and Grafana on the Docker host's loopback (monitoring.enabled only). */
  readonly monitoringUrls?: { readonly prometheus: string; readonly grafana: string };
};

/** Turns any failure into a one-line RunError (Pulumi prints it without a stack trace). */
function fail(err: unknown): never {
  const details = err instanceof ReplyxError ? err.details : [];
  for (const line of details) void pulumi.log.error(line);
  throw new pulumi.RunError(formatErrorForCli(err, process.env, false));
}

function readTopology(config: Readonly<Record<string, string>>): ValidatedTopology {
  try {
    return topologyFromPulumiConfig(config);
  } catch (err) {
    return fail(err);
  }
}

/** Deploys the Docker target: secrets, then the ReplyxDockerStack component. */
export function deployDocker(topology: Topology): DockerStackOutputs {
  const dockerConfig = new pulumi.Config(DOCKER_CONFIG_NAMESPACE);
  const secrets = new ReplyxSecrets(`${topology.name}-secrets`, { redisUsers: true });
  const stateDir = dockerConfig.get('stateDir');
  // The docker provider's own daemon setting, so the nginx reload talks to the same daemon.
  const dockerHost = new pulumi.Config('docker').get('host');
  const stack = new ReplyxDockerStack(topology.name, {
    topology,
    secrets: {
      jwtSecret: secrets.jwtSecret,
      siteTokenSecret: secrets.siteTokenSecret,
      widgetTokenSecret: secrets.widgetTokenSecret,
      postgresPassword: secrets.postgresPassword,
      publishKey: secrets.publishKey,
      gatewayDatabasePassword: secrets.gatewayDatabasePassword,
      redisGatewayPassword: secrets.redisPasswords!.gateway,
      redisPublisherPassword: secrets.redisPasswords!.publisher,
      redisAdminPassword: secrets.redisPasswords!.admin,
      ...(secrets.debugToken !== undefined ? { debugToken: secrets.debugToken } : {}),
    },
    ...(stateDir !== undefined ? { stateDir } : {}),
    ...(dockerHost !== undefined ? { dockerHost } : {}),
  });
  return {
    target: 'docker',
    publicUrl: stack.publicUrl,
    containerNames: stack.containerNames,
    networkName: stack.networkName,
    nginxConfigFile: stack.nginxConfigFile,
    wsRoute: stack.wsRoute,
    topologyChecksum: stack.topologyChecksum,
    generatedSecrets: secrets.generated,
    ...(stack.plan.monitoringUrls ? { monitoringUrls: stack.plan.monitoringUrls } : {}),
  };
}

/** Where the AWS target's entry lives; resolved at run time so the Docker path never needs it. */
export const AWS_TARGET_MODULE = new URL('./targets/aws/index.js', import.meta.url).href;

/** Imports a target module by URL, with a coded error when the module itself is absent. */
export async function loadTargetModule(moduleUrl: string): Promise<TargetModule> {
  let mod: Partial<TargetModule>;
  try {
    // A computed specifier: the AWS module is written separately and may be absent from a checkout.
    mod = (await import(moduleUrl)) as Partial<TargetModule>;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const file = fileURLToPath(moduleUrl);
    // Only "the entry itself is absent" gets this message; a broken import inside it surfaces as is.
    if (code === 'ERR_MODULE_NOT_FOUND' && String((err as Error).message).includes(`Cannot find module '${file}'`)) {
      throw new ReplyxError('RPX_TARGET_MODULE_MISSING', `this checkout has no ${path.relative(process.cwd(), file) || file} (the target's entry)`, 'use a stack with replyx:target docker, or update to a version that has this target', {
        cause: err,
      });
    }
    throw err;
  }
  if (typeof mod.deploy !== 'function') {
    throw new ReplyxError('RPX_TARGET_MODULE_MISSING', `${fileURLToPath(moduleUrl)} does not export deploy()`, 'export `deploy({topology, warnings})` returning the stack outputs from that module');
  }
  return mod as TargetModule;
}

/** Options of {@link runReplyxProgram}. */
export interface ReplyxProgramOptions {
  /** URL of the AWS target module; default {@link AWS_TARGET_MODULE}. */
  readonly awsModule?: string;
}

/**
 * Runs the program for a Pulumi config map (`pulumi.runtime.allConfig()`): validates the
 * topology first (an invalid one fails before any resource is registered) and dispatches on
 * its target. Returns the stack outputs.
 */
export async function runReplyxProgram(config: Readonly<Record<string, string>>, options: ReplyxProgramOptions = {}): Promise<Record<string, unknown>> {
  const { topology, warnings } = readTopology(config);
  for (const w of warnings) void pulumi.log.warn(`${w.path}: ${w.message} (fix: ${w.fix})`);
  try {
    // Fail fast on architecture rules before any resource is registered; non-blocking findings are warnings.
    for (const r of assertArchitecture(topology)) void pulumi.log.warn(`architecture ${r.id}: ${r.detail} (fix: ${r.fix})`);
    switch (topology.target) {
      case 'docker':
        return { ...deployDocker(topology) };
      case 'aws': {
        const aws = await loadTargetModule(options.awsModule ?? AWS_TARGET_MODULE);
        return { target: 'aws', ...(await aws.deploy({ topology, warnings })) };
      }
      case 'local':
        throw new ReplyxError(
          'RPX_TARGET_LOCAL_NOT_PULUMI',
          'this stack has replyx:target local, which runs as local processes, not with Pulumi',
          'run `npm start` for the local stack, or `pulumi up --stack dev` for the Docker target',
        );
    }
  } catch (err) {
    if (pulumi.RunError.isInstance(err)) throw err;
    return fail(err);
  }
}
