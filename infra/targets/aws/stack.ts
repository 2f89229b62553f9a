import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import * as random from '@pulumi/random';
import { renderNginxConfig } from '../../render/nginx.js';
import { assertArchitecture } from '../../rules/index.js';
import { ReplyxSecrets } from '../../secrets.js';
import { CONFIG_NAMESPACE, TopologyError, checkTopology, topologyChecksum, type Topology } from '../../topology/index.js';
import { Alarms } from './alarms.js';
import { Data } from './data.js';
import { Images, planImages } from './images.js';
import { Network, planAwsNetwork } from './network.js';
import { SecurityGroups, planSecurityGroups } from './security.js';
import { Services } from './services.js';
import type { AwsServiceName, StackSecretName } from './tasks.js';

// pulumi.all over a Record widens its keys to string; the keys are ours, so narrow them back.
const byService = (values: Record<AwsServiceName, pulumi.Output<string>>) => pulumi.all(values) as pulumi.Output<Record<AwsServiceName, string>>;

/** Options of {@link createAwsStack}. */
export interface AwsStackOptions {
  /** Stack name used in resource names; default `pulumi.getStack()`. */
  readonly stack?: string;
  /** Repository root holding the Dockerfiles; default this checkout. */
  readonly projectRoot?: string;
}

/** What `pulumi up --stack aws` prints and the rollback script reads. */
export interface AwsStackOutputs {
  readonly publicUrl: pulumi.Output<string>;
  readonly albDnsName: pulumi.Output<string>;
  readonly region: pulumi.Output<string>;
  readonly clusterName: pulumi.Output<string>;
  readonly serviceNames: pulumi.Output<Record<AwsServiceName, string>>;
  readonly logGroupNames: pulumi.Output<Record<AwsServiceName, string>>;
  /** Task definition revisions this `up` deployed; a service running another one was rolled back. */
  readonly taskDefinitionArns: pulumi.Output<Record<AwsServiceName, string>>;
  readonly wsRoute: string;
  readonly backendWorkers: number;
  readonly topologyChecksum: string;
  /** Names (never values) of the secrets generated because the config lacked them. */
  readonly generatedSecrets: readonly string[];
  /** CloudWatch alarm names by the Prometheus alert they stand for (monitoring.enabled only). */
  readonly alarmNames?: pulumi.Output<Record<string, string>>;
}

/** Arguments of the Stack component. */
export interface AwsStackArgs {
  readonly topology: Topology;
  readonly stack: string;
  /** The `aws` render of the nginx config (`renderNginxConfig(topology, 'aws')`). */
  readonly nginxConfig: string;
  readonly projectRoot?: string;
}

/**
 * `replyx:aws:Stack`: the whole topology on AWS: network, security groups, secrets in Secrets
 * Manager, Redis and Postgres, images, and the ECS services behind the load balancer.
 */
export class AwsStack extends pulumi.ComponentResource {
  readonly outputs: AwsStackOutputs;

  /** Creates every resource for `args.topology`. */
  constructor(name: string, args: AwsStackArgs, opts?: pulumi.ComponentResourceOptions) {
    super('replyx:aws:Stack', name, {}, opts);
    const { topology, stack, nginxConfig } = args;
    const parent = { parent: this };
    const tags = { 'replyx:stack': stack, 'replyx:name': topology.name };
    const networkPlan = planAwsNetwork(topology);
    const https = topology.aws.certificateArn !== undefined;

    const network = new Network(name, { plan: networkPlan, tags }, parent);
    const groups = new SecurityGroups(name, { vpcId: network.vpcId, flows: planSecurityGroups(topology, { https }), tags }, parent);

    const secrets = new ReplyxSecrets(`${name}-secrets`, {}, parent);
    const configuredRedis = new pulumi.Config(CONFIG_NAMESPACE).getSecret('redisPassword');
    const generated: string[] = [...secrets.generated];
    let redisAuthToken: pulumi.Output<string>;
    if (configuredRedis !== undefined) {
      redisAuthToken = configuredRedis;
    } else {
      generated.push('redisPassword');
      // Letters and digits only: valid as an ElastiCache token and safe in a URL.
      redisAuthToken = pulumi.secret(new random.RandomPassword(`${name}-redis-auth`, { length: 48, special: false }, parent).result);
    }

    const data = new Data(
      name,
      {
        topology,
        stack,
        privateSubnetIds: network.privateSubnetIds,
        redisSecurityGroupId: groups.ids.redis,
        postgresSecurityGroupId: groups.ids.postgres,
        redisAuthToken,
        postgresPassword: secrets.postgresPassword,
        gatewayDatabasePassword: secrets.gatewayDatabasePassword,
        tags,
      },
      parent,
    );

    // Values reach tasks through Secrets Manager (`secrets` in the container definitions), so
    // they never appear in task definitions, the console or `describe-task-definition`.
    const values: Partial<Record<StackSecretName, pulumi.Output<string>>> = {
      databaseUrl: data.databaseUrl,
      gatewayDatabaseUrl: data.gatewayDatabaseUrl,
      gatewayDatabasePassword: secrets.gatewayDatabasePassword,
      redisUrl: data.redisUrl,
      jwtSecret: secrets.jwtSecret,
      siteTokenSecret: secrets.siteTokenSecret,
      widgetTokenSecret: secrets.widgetTokenSecret,
      publishKey: secrets.publishKey,
      ...(secrets.debugToken !== undefined ? { debugToken: secrets.debugToken } : {}),
    };
    const secretArns: Partial<Record<StackSecretName, pulumi.Output<string>>> = {};
    const versions: aws.secretsmanager.SecretVersion[] = [];
    for (const [key, value] of Object.entries(values) as [StackSecretName, pulumi.Output<string>][]) {
      const secret = new aws.secretsmanager.Secret(
        `${name}-${key}`,
        // Deleted at once on destroy, so the same stack can be created again right away; the
        // generated values live on in the Pulumi state, configured ones in the stack config.
        { description: `replyx ${topology.name} (${stack}): ${key}`, recoveryWindowInDays: 0, tags },
        parent,
      );
      versions.push(new aws.secretsmanager.SecretVersion(`${name}-${key}`, { secretId: secret.id, secretString: value }, parent));
      secretArns[key] = secret.arn;
    }

    const images = new Images(name, { sources: planImages(topology, stack, args.projectRoot), tags }, parent);
    const region = topology.aws.region !== undefined ? pulumi.output(topology.aws.region) : aws.getRegionOutput({}, parent).region;
    const services = new Services(
      name,
      {
        topology,
        stack,
        region,
        vpcId: network.vpcId,
        publicSubnetIds: network.publicSubnetIds,
        privateSubnetIds: network.privateSubnetIds,
        securityGroupIds: groups.ids,
        images: images.refs,
        repositoryArns: images.repositoryArns,
        secretArns: {
          databaseUrl: secretArns.databaseUrl!,
          gatewayDatabaseUrl: secretArns.gatewayDatabaseUrl!,
          gatewayDatabasePassword: secretArns.gatewayDatabasePassword!,
          redisUrl: secretArns.redisUrl!,
          jwtSecret: secretArns.jwtSecret!,
          siteTokenSecret: secretArns.siteTokenSecret!,
          widgetTokenSecret: secretArns.widgetTokenSecret!,
          publishKey: secretArns.publishKey!,
          ...(secretArns.debugToken !== undefined ? { debugToken: secretArns.debugToken } : {}),
        },
        nginxConfig,
        dependsOn: versions,
        tags,
      },
      parent,
    );

    // CloudWatch alarms for the alert conditions AWS's own metrics can express (docs/aws.md).
    const alarms = topology.monitoring.enabled
      ? new Alarms(name, { topology, stack, clusterName: services.clusterName, serviceNames: services.serviceNames, loadBalancerArnSuffix: services.albArnSuffix, tags }, parent)
      : undefined;

    this.outputs = {
      publicUrl: services.publicUrl,
      albDnsName: services.albDnsName,
      region,
      clusterName: services.clusterName,
      serviceNames: byService(services.serviceNames),
      logGroupNames: byService(services.logGroupNames),
      taskDefinitionArns: byService(services.taskDefinitionArns),
      wsRoute: topology.wsRoute,
      backendWorkers: topology.backend.workers,
      topologyChecksum: topologyChecksum(topology),
      generatedSecrets: generated,
      ...(alarms ? { alarmNames: pulumi.output(alarms.names) } : {}),
    };
    this.registerOutputs({ ...this.outputs });
  }
}

/**
 * Creates the AWS stack for a topology and returns its outputs. Before any resource is
 * registered, the topology is checked again (schema and cross-field rules, so a hand-built
 * object fails like a bad stack file) and the shared architecture rules run against the
 * `aws` nginx render.
 */
export function createAwsStack(topology: Topology, opts: AwsStackOptions = {}): AwsStackOutputs {
  const { topology: checked, issues } = checkTopology(topology);
  if (checked === undefined) throw new TopologyError(issues.filter((i) => i.severity === 'error'), 'aws target');
  if (checked.target !== 'aws') {
    throw new TopologyError([{ path: 'target', message: `is "${checked.target}", the AWS target needs "aws"`, fix: 'set replyx:target to aws in Pulumi.<stack>.yaml', severity: 'error' }], 'aws target');
  }
  const nginxConfig = renderNginxConfig(checked, 'aws');
  // Non-blocking results (e.g. the desync risk a rollback accepts on purpose) are shown, not fatal.
  for (const r of assertArchitecture(checked, { nginxConfig })) void pulumi.log.warn(`${r.id}: ${r.detail}${r.fix ? ` (fix: ${r.fix})` : ''}`);
  const stack = opts.stack ?? pulumi.getStack();
  // An explicit region pins every resource there; otherwise the aws:region stack setting applies.
  const providers = checked.aws.region !== undefined ? [new aws.Provider(`${checked.name}-aws`, { region: checked.aws.region as aws.Region })] : [];
  const component = new AwsStack(checked.name, { topology: checked, stack, nginxConfig, ...(opts.projectRoot !== undefined ? { projectRoot: opts.projectRoot } : {}) }, { providers });
  return component.outputs;
}
