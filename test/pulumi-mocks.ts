// Pulumi engine mocks for unit tests (pulumi.runtime.setMocks): every registered resource is
// recorded with its raw inputs, and providers' computed outputs get stable fake values. The
// Pulumi engine is an external boundary, so this is the one place tests replace it.

import * as pulumi from '@pulumi/pulumi';

/** One resource the program registered, with the inputs the engine received. */
export interface RecordedResource {
  readonly type: string;
  readonly name: string;
  /** Inputs as the engine sees them; secret values are wrapped (see {@link isSecretValue}). */
  readonly inputs: Record<string, unknown>;
  /** Names of the resources the engine had finished before this one was registered (ordering checks). */
  readonly finishedBefore: readonly string[];
}

// The wire form of a secret: what rpc.deserializeProperties leaves in mock inputs.
const SIG_KEY = '4dabf18193072939515e22adb298388d';
const SECRET_SIG = '1b47061264138c4ac30d75fd1eb44270';

/** True when a mock input value is a Pulumi secret. */
export function isSecretValue(value: unknown): boolean {
  return typeof value === 'object' && value !== null && (value as Record<string, unknown>)[SIG_KEY] === SECRET_SIG;
}

/** The plain value of a mock input, secret or not. */
export function plain<T = unknown>(value: unknown): T {
  return (isSecretValue(value) ? (value as { value: unknown }).value : value) as T;
}

// Computed outputs real providers would return; enough for the program's wiring to resolve.
function computedOutputs(type: string, name: string, inputs: Record<string, unknown>): Record<string, unknown> {
  switch (type) {
    case 'docker:index/remoteImage:RemoteImage':
      return { imageId: `sha256:remote-${String(plain(inputs.name))}`, repoDigest: `${String(plain(inputs.name))}@sha256:0` };
    case 'docker:index/image:Image':
      return { repoDigest: `sha256:built-${String(plain(inputs.imageName))}`, baseImageName: plain(inputs.imageName) };
    case 'random:index/randomPassword:RandomPassword':
      return { result: { [SIG_KEY]: SECRET_SIG, value: `generated-${name}` } };
    case 'pulumi-nodejs:dynamic/replyx:NginxConfigFile':
      return { sha256: 'mock-sha256', reloaded: false };
    case 'aws:lb/loadBalancer:LoadBalancer':
      return awsCommon(type, name, inputs, { dnsName: `${name}.eu-west-1.elb.amazonaws.com` });
    case 'aws:ecr/repository:Repository':
      return awsCommon(type, name, inputs, { repositoryUrl: `123456789012.dkr.ecr.eu-west-1.amazonaws.com/${String(plain(inputs.name))}`, registryId: '123456789012' });
    case 'aws:elasticache/replicationGroup:ReplicationGroup':
      return awsCommon(type, name, inputs, { primaryEndpointAddress: `master.${name}.cache.amazonaws.com` });
    case 'aws:rds/instance:Instance':
      return awsCommon(type, name, inputs, { address: `${name}.rds.amazonaws.com` });
    default:
      return type.startsWith('aws:') ? awsCommon(type, name, inputs, {}) : {};
  }
}

// Every AWS resource has an ARN and a physical name once created.
function awsCommon(type: string, name: string, inputs: Record<string, unknown>, extra: Record<string, unknown>): Record<string, unknown> {
  return { arn: `arn:aws:mock:eu-west-1:123456789012:${type}/${name}`, name: inputs.name ?? `${name}-physical`, ...extra };
}

// Data-source answers the AWS target asks for (zones, region, ECR login).
function callResults(token: string): Record<string, unknown> | undefined {
  switch (token) {
    case 'aws:index/getAvailabilityZones:getAvailabilityZones':
      return { names: ['eu-west-1a', 'eu-west-1b', 'eu-west-1c'], zoneIds: ['euw1-az1', 'euw1-az2', 'euw1-az3'] };
    case 'aws:index/getRegion:getRegion':
      return { name: 'eu-west-1', region: 'eu-west-1' };
    case 'aws:ecr/getAuthorizationToken:getAuthorizationToken':
      return { userName: 'AWS', password: 'ecr-token', proxyEndpoint: 'https://123456789012.dkr.ecr.eu-west-1.amazonaws.com' };
    default:
      return undefined;
  }
}

/**
 * Installs the mocks and returns the list that fills up as resources register. Call it before
 * the program creates resources (Pulumi's unit-testing rule).
 */
export function installPulumiMocks(
  options: { preview?: boolean; project?: string; stack?: string; /** Milliseconds the engine takes to finish a resource (default 0). */ delayMs?: (type: string, name: string) => number } = {},
): RecordedResource[] {
  const resources: RecordedResource[] = [];
  const finished: string[] = [];
  void pulumi.runtime.setMocks(
    {
      async newResource(args: pulumi.runtime.MockResourceArgs) {
        const inputs = args.inputs as Record<string, unknown>;
        resources.push({ type: args.type, name: args.name, inputs, finishedBefore: [...finished] });
        const delay = options.delayMs?.(args.type, args.name) ?? 0;
        if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
        finished.push(args.name);
        return { id: `${args.name}-id`, state: { ...inputs, ...computedOutputs(args.type, args.name, inputs) } };
      },
      call(args: pulumi.runtime.MockCallArgs) {
        return callResults(args.token) ?? (args.inputs as Record<string, unknown>);
      },
    },
    options.project ?? 'replyx',
    options.stack ?? 'test',
    options.preview ?? false,
  );
  return resources;
}

/** Resolves an Output to its value (under mocks every value is known). */
export function valueOf<T>(output: pulumi.Output<T>): Promise<T> {
  return new Promise((resolve) => {
    output.apply((v) => {
      resolve(v);
      return v;
    });
  });
}
