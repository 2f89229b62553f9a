import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import { formatErrorForCli, ReplyxError } from '../../errors.js';
import { CLOUD_MAP_DNS_TTL_S, nginxDeregistrationDelayS, rollingDeployment } from '../../render/deploy-timing.js';
import type { Topology } from '../../topology/index.js';
import { ECS_TASKS_TRUST_POLICY, planExecutionPolicy } from './iam.js';
import { fittedName, NAME_LIMITS } from './names.js';
import type { SecurityGroupName } from './security.js';
import { AWS_SERVICES, CONTAINER_NAMES, planTaskDefinitions, secretEnvFor, type AwsServiceName, type SecretArns, type TaskRefs } from './tasks.js';

/** nginx tasks behind the load balancer: two, so one zone or one task can fail without an outage. */
export const NGINX_TASKS = 2;

/** How one ECS service runs and deploys (pure data, pinned by the tests). */
export interface ServicePlan {
  readonly service: AwsServiceName;
  /** ECS service name, e.g. `replyx-ws-gateway` (the docker target's container name). */
  readonly name: string;
  readonly desiredCount: number;
  readonly deploymentMinimumHealthyPercent: number;
  readonly deploymentMaximumPercent: number;
  readonly deploymentCircuitBreaker: { readonly enable: true; readonly rollback: true };
  readonly healthCheckGracePeriodSeconds: number;
  /** Cloud Map service name in `<name>.local`, for the services nginx proxies to. */
  readonly discoveryName?: string;
  /** True for the service behind the load balancer. */
  readonly loadBalanced: boolean;
  readonly securityGroup: SecurityGroupName;
}

/**
 * Plans the three Fargate services: desired counts from the topology (the gateway runs
 * gateway.replicas, which validation keeps at 1 unless the broker is Redis), rolling deploys
 * that replace one task at a time (a new task healthy before an old one stops, so a draining
 * gateway or nginx task always has peers that take its reconnects), with the circuit breaker
 * rolling back a deploy whose tasks never get healthy.
 */
export function planServices(topology: Topology): Readonly<Record<AwsServiceName, ServicePlan>> {
  const circuitBreaker = { deploymentCircuitBreaker: { enable: true, rollback: true } } as const;
  const rolling = (desiredCount: number, exclusive = false) => {
    const d = rollingDeployment(desiredCount, exclusive);
    return { desiredCount, deploymentMinimumHealthyPercent: d.minimumHealthyPercent, deploymentMaximumPercent: d.maximumPercent };
  };
  // With the in-memory broker two gateway tasks must never overlap (events published to one
  // would miss the other's clients), so that deploy stops the old task before starting the
  // new one; clients get 4200 and resume with since=.
  const singleGateway = topology.gateway.broker === 'memory';
  return {
    backend: {
      ...circuitBreaker,
      ...rolling(topology.backend.replicas),
      service: 'backend',
      name: `${topology.name}-${CONTAINER_NAMES.backend}`,
      // Migrations run when the backend starts: give it time before failed checks count.
      healthCheckGracePeriodSeconds: 120,
      discoveryName: CONTAINER_NAMES.backend,
      loadBalanced: false,
      securityGroup: 'backend',
    },
    gateway: {
      ...circuitBreaker,
      ...(singleGateway ? rolling(1, true) : rolling(topology.gateway.replicas)),
      service: 'gateway',
      name: `${topology.name}-${CONTAINER_NAMES.gateway}`,
      healthCheckGracePeriodSeconds: 60,
      discoveryName: CONTAINER_NAMES.gateway,
      loadBalanced: false,
      securityGroup: 'gateway',
    },
    nginx: {
      ...circuitBreaker,
      ...rolling(NGINX_TASKS),
      service: 'nginx',
      name: `${topology.name}-${CONTAINER_NAMES.nginx}`,
      healthCheckGracePeriodSeconds: 60,
      loadBalanced: true,
      securityGroup: 'nginx',
    },
  };
}

/**
 * What a finished ECS update says about the revision it was given (pure). The provider's
 * steady-state wait also succeeds when the deployment circuit breaker rolled the service back,
 * because the rolled-back service is steady; the service then runs another task definition than
 * the one this deploy registered, and that is a failed deploy: RPX_AWS_ROLLED_BACK.
 */
export function rolledBackError(input: { readonly serviceName: string; readonly logGroup: string; readonly region: string; readonly deployed: string; readonly running: string }): ReplyxError | undefined {
  if (input.running === input.deployed) return undefined;
  const revision = (arn: string) => arn.split('/').pop() ?? arn;
  return new ReplyxError(
    'RPX_AWS_ROLLED_BACK',
    `ECS service ${input.serviceName} runs ${revision(input.running)}, not ${revision(input.deployed)} from this deploy: its new tasks never became healthy and the deployment circuit breaker rolled it back`,
    `read why the new tasks failed (aws logs tail ${input.logGroup} --since 30m --region ${input.region}; aws ecs describe-services shows the stopped reasons), fix the cause, and run pulumi up again`,
  );
}

/** The Application Load Balancer's settings (pure). */
export function planLoadBalancer(topology: Topology) {
  const certificateArn = topology.aws.certificateArn;
  return {
    // Above the heartbeat (validated), so an idle WebSocket is never cut by the ALB: each ping
    // resets the idle timer.
    idleTimeout: topology.aws.albIdleTimeoutS,
    targetPort: topology.nginx.port,
    healthCheck: { enabled: true, path: '/health', protocol: 'HTTP', matcher: '200', interval: 15, timeout: 5, healthyThreshold: 2, unhealthyThreshold: 3 },
    // As long as a reload lets old nginx workers keep their WebSockets (deploy-timing.ts).
    deregistrationDelay: nginxDeregistrationDelayS(topology),
    http: certificateArn === undefined ? ({ action: 'forward' } as const) : ({ action: 'redirect', port: '443', protocol: 'HTTPS', statusCode: 'HTTP_301' } as const),
    https: certificateArn === undefined ? undefined : { certificateArn, sslPolicy: 'ELBSecurityPolicy-TLS13-1-2-2021-06' },
  };
}

/** Names that appear in stack outputs and runbooks (pure). */
export function planNames(topology: Topology, stack: string) {
  const base = `${topology.name}-${stack}`;
  return {
    cluster: base,
    namespace: `${topology.name}.local`,
    logGroups: Object.fromEntries(AWS_SERVICES.map((s) => [s, `/ecs/${base}/${CONTAINER_NAMES[s]}`])) as Record<AwsServiceName, string>,
    // Families are account-wide: the stack name keeps two stacks' revisions apart.
    families: Object.fromEntries(AWS_SERVICES.map((s) => [s, `${base}-${CONTAINER_NAMES[s]}`])) as Record<AwsServiceName, string>,
  };
}

/** Arguments of the Services component. */
export interface ServicesArgs {
  readonly topology: Topology;
  readonly stack: string;
  readonly region: pulumi.Input<string>;
  readonly vpcId: pulumi.Input<string>;
  readonly publicSubnetIds: pulumi.Input<string[]>;
  readonly privateSubnetIds: pulumi.Input<string[]>;
  readonly securityGroupIds: Readonly<Record<SecurityGroupName, pulumi.Input<string>>>;
  readonly images: Readonly<Record<AwsServiceName, pulumi.Input<string>>>;
  /** ECR repository ARNs per service, for the pull permission; empty for external images. */
  readonly repositoryArns: Readonly<Record<AwsServiceName, pulumi.Input<string>[]>>;
  readonly secretArns: Readonly<Record<Exclude<keyof SecretArns, 'debugToken'>, pulumi.Input<string>>> & { readonly debugToken?: pulumi.Input<string> | undefined };
  readonly nginxConfig: string;
  /** Resources the tasks need before they start (the secrets' values). */
  readonly dependsOn: pulumi.Input<pulumi.Resource>[];
  readonly tags: Readonly<Record<string, string>>;
}

/**
 * `replyx:aws:Services`: the ECS cluster, the Cloud Map namespace `<name>.local` (backend and
 * ws-gateway), log groups with retention, per-service execution and task roles, the three task
 * definitions and Fargate services, and the ALB in front of nginx.
 */
export class Services extends pulumi.ComponentResource {
  readonly clusterName: pulumi.Output<string>;
  readonly serviceNames: Record<AwsServiceName, pulumi.Output<string>>;
  readonly logGroupNames: Record<AwsServiceName, pulumi.Output<string>>;
  readonly taskDefinitionArns: Record<AwsServiceName, pulumi.Output<string>>;
  readonly albDnsName: pulumi.Output<string>;
  /** `app/<name>/<id>`: the load balancer's CloudWatch dimension (alarms). */
  readonly albArnSuffix: pulumi.Output<string>;
  readonly publicUrl: pulumi.Output<string>;

  /** Creates the cluster, services and load balancer for `args.topology`. */
  constructor(name: string, args: ServicesArgs, opts?: pulumi.ComponentResourceOptions) {
    super('replyx:aws:Services', name, {}, opts);
    const { topology } = args;
    const parent = { parent: this };
    const names = planNames(topology, args.stack);
    const plans = planServices(topology);
    const lbPlan = planLoadBalancer(topology);

    const cluster = new aws.ecs.Cluster(`${name}-cluster`, { name: names.cluster, tags: args.tags }, parent);
    const namespace = new aws.servicediscovery.PrivateDnsNamespace(
      `${name}-namespace`,
      { name: names.namespace, vpc: args.vpcId, description: `replyx ${topology.name}: backend and ws-gateway for nginx`, tags: args.tags },
      parent,
    );

    const logGroups = {} as Record<AwsServiceName, aws.cloudwatch.LogGroup>;
    const taskDefinitions = {} as Record<AwsServiceName, aws.ecs.TaskDefinition>;
    const executionRoles = {} as Record<AwsServiceName, aws.iam.Role>;
    const taskRoles = {} as Record<AwsServiceName, aws.iam.Role>;
    for (const service of AWS_SERVICES) {
      logGroups[service] = new aws.cloudwatch.LogGroup(`${name}-${service}`, { name: names.logGroups[service], retentionInDays: topology.aws.logRetentionDays, tags: args.tags }, parent);
      executionRoles[service] = new aws.iam.Role(
        `${name}-${service}-exec`,
        { assumeRolePolicy: JSON.stringify(ECS_TASKS_TRUST_POLICY), description: `replyx ${service}: pull image, write logs, read its secrets`, tags: args.tags },
        parent,
      );
      const ownSecrets = secretEnvFor(topology, service, { debugToken: args.secretArns.debugToken }).map(({ secret }) => args.secretArns[secret]!);
      new aws.iam.RolePolicy(
        `${name}-${service}-exec`,
        {
          role: executionRoles[service].id,
          policy: pulumi
            .all([logGroups[service].arn, pulumi.all(args.repositoryArns[service]), pulumi.all(ownSecrets)])
            .apply(([logGroupArn, repositoryArns, secretArns]) => JSON.stringify(planExecutionPolicy({ logGroupArn, repositoryArns, secretArns }))),
        },
        parent,
      );
      // The application itself calls no AWS API: its role has no policy at all. Grant app
      // permissions here (never on the execution role) if your backend needs them.
      taskRoles[service] = new aws.iam.Role(
        `${name}-${service}-task`,
        { assumeRolePolicy: JSON.stringify(ECS_TASKS_TRUST_POLICY), description: `replyx ${service} application (no AWS permissions)`, tags: args.tags },
        parent,
      );
    }

    const plannedTasks = pulumi
      .all([
        pulumi.all(args.images) as pulumi.Output<Record<AwsServiceName, string>>,
        pulumi.output(args.region),
        pulumi.all({ backend: logGroups.backend.name, gateway: logGroups.gateway.name, nginx: logGroups.nginx.name }) as pulumi.Output<Record<AwsServiceName, string>>,
        pulumi.all(args.secretArns),
      ])
      .apply(([images, region, groups, secrets]) => {
        const refs: TaskRefs = {
          images,
          region,
          logGroups: groups,
          secrets: secrets as SecretArns,
          nginxConfig: args.nginxConfig,
        };
        return planTaskDefinitions(topology, refs);
      });
    for (const service of AWS_SERVICES) {
      const plan = plannedTasks.apply((p) => p[service]);
      taskDefinitions[service] = new aws.ecs.TaskDefinition(
        `${name}-${service}`,
        {
          family: names.families[service],
          requiresCompatibilities: ['FARGATE'],
          networkMode: 'awsvpc',
          cpu: plan.cpu,
          memory: plan.memory,
          runtimePlatform: { operatingSystemFamily: 'LINUX', cpuArchitecture: 'X86_64' },
          executionRoleArn: executionRoles[service].arn,
          taskRoleArn: taskRoles[service].arn,
          containerDefinitions: plan.apply((p) => JSON.stringify(p.containerDefinitions)),
          tags: args.tags,
        },
        parent,
      );
    }

    const discovery = {} as Partial<Record<AwsServiceName, aws.servicediscovery.Service>>;
    for (const service of AWS_SERVICES) {
      const discoveryName = plans[service].discoveryName;
      if (discoveryName === undefined) continue;
      discovery[service] = new aws.servicediscovery.Service(
        `${name}-${service}-discovery`,
        {
          name: discoveryName,
          namespaceId: namespace.id,
          // Short TTL, matched by nginx's resolver valid=: a stopping task leaves nginx's
          // upstream within seconds instead of taking reconnects while it drains.
          dnsConfig: { namespaceId: namespace.id, dnsRecords: [{ type: 'A', ttl: CLOUD_MAP_DNS_TTL_S }], routingPolicy: 'MULTIVALUE' },
          // ECS reports task health to Cloud Map, so only healthy tasks are in DNS.
          healthCheckCustomConfig: {},
          forceDestroy: true,
          tags: args.tags,
        },
        parent,
      );
    }

    const alb = new aws.lb.LoadBalancer(
      fittedName(name, 'alb', NAME_LIMITS.loadBalancer),
      {
        loadBalancerType: 'application',
        internal: false,
        securityGroups: [args.securityGroupIds.alb],
        subnets: args.publicSubnetIds,
        idleTimeout: lbPlan.idleTimeout,
        dropInvalidHeaderFields: true,
        tags: args.tags,
      },
      parent,
    );
    const targetGroup = new aws.lb.TargetGroup(
      fittedName(name, 'nginx', NAME_LIMITS.targetGroup),
      { port: lbPlan.targetPort, protocol: 'HTTP', targetType: 'ip', vpcId: args.vpcId, healthCheck: lbPlan.healthCheck, deregistrationDelay: lbPlan.deregistrationDelay, tags: args.tags },
      parent,
    );
    const forward = [{ type: 'forward', targetGroupArn: targetGroup.arn }];
    const listeners: aws.lb.Listener[] = [
      new aws.lb.Listener(
        `${name}-http`,
        {
          loadBalancerArn: alb.arn,
          port: 80,
          protocol: 'HTTP',
          defaultActions:
            lbPlan.http.action === 'forward'
              ? forward
              : [{ type: 'redirect', redirect: { port: lbPlan.http.port, protocol: lbPlan.http.protocol, statusCode: lbPlan.http.statusCode } }],
          tags: args.tags,
        },
        parent,
      ),
    ];
    if (lbPlan.https) {
      listeners.push(
        new aws.lb.Listener(
          `${name}-https`,
          { loadBalancerArn: alb.arn, port: 443, protocol: 'HTTPS', certificateArn: lbPlan.https.certificateArn, sslPolicy: lbPlan.https.sslPolicy, defaultActions: forward, tags: args.tags },
          parent,
        ),
      );
    }

    const services = {} as Record<AwsServiceName, aws.ecs.Service>;
    // nginx starts last: its upstream names must already resolve in Cloud Map, and the target
    // group must be attached to a listener before ECS accepts it.
    for (const service of ['backend', 'gateway', 'nginx'] as const) {
      const plan = plans[service];
      const registry = discovery[service];
      services[service] = new aws.ecs.Service(
        `${name}-${service}`,
        {
          name: plan.name,
          cluster: cluster.arn,
          taskDefinition: taskDefinitions[service].arn,
          launchType: 'FARGATE',
          platformVersion: 'LATEST',
          desiredCount: plan.desiredCount,
          deploymentMinimumHealthyPercent: plan.deploymentMinimumHealthyPercent,
          deploymentMaximumPercent: plan.deploymentMaximumPercent,
          deploymentCircuitBreaker: plan.deploymentCircuitBreaker,
          healthCheckGracePeriodSeconds: plan.healthCheckGracePeriodSeconds,
          networkConfiguration: { subnets: args.privateSubnetIds, securityGroups: [args.securityGroupIds[plan.securityGroup]], assignPublicIp: false },
          serviceRegistries: registry ? { registryArn: registry.arn } : undefined,
          loadBalancers: plan.loadBalanced ? [{ targetGroupArn: targetGroup.arn, containerName: CONTAINER_NAMES[service], containerPort: lbPlan.targetPort }] : undefined,
          // `pulumi up` returns once the service is steady; taskDefinitionArns below turns a
          // steady state reached by a circuit-breaker rollback into a failed deploy.
          waitForSteadyState: true,
          propagateTags: 'SERVICE',
          enableEcsManagedTags: true,
          tags: args.tags,
        },
        { parent: this, dependsOn: [...args.dependsOn, ...(service === 'nginx' ? [services.backend, services.gateway, ...listeners] : [])] },
      );
    }

    this.clusterName = cluster.name;
    this.serviceNames = { backend: services.backend.name, gateway: services.gateway.name, nginx: services.nginx.name };
    this.logGroupNames = { backend: logGroups.backend.name, gateway: logGroups.gateway.name, nginx: logGroups.nginx.name };
    // The revisions this deploy registered, checked against what each service runs once its
    // steady-state wait returned: a rollback by the circuit breaker fails `pulumi up` here.
    const checked = (service: AwsServiceName) =>
      pulumi
        .all([taskDefinitions[service].arn, services[service].taskDefinition, services[service].name, logGroups[service].name, pulumi.output(args.region)])
        .apply(([deployed, running, serviceName, logGroup, region]) => {
          const error = rolledBackError({ serviceName, logGroup, region, deployed, running: running ?? '(none)' });
          if (error) throw new pulumi.RunError(formatErrorForCli(error, process.env, false));
          return deployed;
        });
    this.taskDefinitionArns = { backend: checked('backend'), gateway: checked('gateway'), nginx: checked('nginx') };
    this.albDnsName = alb.dnsName;
    this.albArnSuffix = alb.arnSuffix;
    this.publicUrl = pulumi.interpolate`${lbPlan.https ? 'https' : 'http'}://${alb.dnsName}`;
    this.registerOutputs({ clusterName: this.clusterName, serviceNames: this.serviceNames, logGroupNames: this.logGroupNames, publicUrl: this.publicUrl });
  }
}
