import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import type { Topology } from '../../topology/index.js';
import type { AwsServiceName } from './tasks.js';

// CloudWatch alarms for the alert conditions that metrics AWS publishes by itself can express:
// ECS service metrics (a service with no running task, memory) and the load balancer's (5xx
// ratio). Each alarm stands for one Prometheus alert of monitoring/alerts.yml and carries its
// runbook, so the runbooks name one alert per condition whatever the target. Conditions that
// need the application's own metrics (handshake refusals, delivery ratio, 4003, slow consumers,
// Redis, publish failures, outbox lag) have no CloudWatch counterpart here: see docs/aws.md.

/** Where an alarm's metric comes from. */
export type AlarmSubject = { readonly kind: 'ecs-service'; readonly service: AwsServiceName } | { readonly kind: 'load-balancer' };

/** One CloudWatch alarm, as plain data (pinned by the tests). */
export interface AlarmPlan {
  /** Suffix of the alarm name `<name>-<stack>-<suffix>`; the runbooks name alarms by it. */
  readonly suffix: string;
  /** The Prometheus alert this alarm stands for. */
  readonly alert: string;
  readonly runbook: string;
  readonly description: string;
  readonly subject: AlarmSubject;
  readonly comparison: 'LessThanThreshold' | 'GreaterThanThreshold';
  readonly threshold: number;
  readonly periodS: number;
  readonly evaluationPeriods: number;
  /** A task that reports nothing is a task that is not running: missing data breaches for the task alarms. */
  readonly treatMissingData: 'breaching' | 'notBreaching';
  /** One metric, or a ratio of two (metric math, in percent). */
  readonly metric:
    | { readonly kind: 'single'; readonly namespace: string; readonly name: string; readonly statistic: 'SampleCount' | 'Average' | 'Sum' }
    | { readonly kind: 'ratio-percent'; readonly namespace: string; readonly numerator: string; readonly denominator: string };
}

/** The alarms every monitored AWS stack gets (pure). */
export function planAlarms(): AlarmPlan[] {
  const noTasks = (service: 'gateway' | 'backend', alert: string, runbook: string): AlarmPlan => ({
    suffix: `${service}-no-tasks`,
    alert,
    runbook,
    description: `No running ${service} task reported CPU for 2 minutes (stands for ${alert}). Runbook: ${runbook}`,
    subject: { kind: 'ecs-service', service },
    // ECS reports one CPUUtilization sample per running task and minute; none means none runs.
    metric: { kind: 'single', namespace: 'AWS/ECS', name: 'CPUUtilization', statistic: 'SampleCount' },
    comparison: 'LessThanThreshold',
    threshold: 1,
    periodS: 60,
    evaluationPeriods: 2,
    treatMissingData: 'breaching',
  });
  return [
    noTasks('gateway', 'ReplyxGatewayDown', 'runbooks/ws-gateway-down.md'),
    noTasks('backend', 'ReplyxBackendDown', 'runbooks/backend-errors.md'),
    {
      suffix: '5xx-ratio',
      alert: 'ReplyxBackend5xxRatio',
      runbook: 'runbooks/backend-errors.md',
      description: 'More than 5% of requests through the load balancer answered 5xx by nginx (backend errors, or 502 for a backend that is down) for 5 minutes (stands for ReplyxBackend5xxRatio). Runbook: runbooks/backend-errors.md',
      subject: { kind: 'load-balancer' },
      metric: { kind: 'ratio-percent', namespace: 'AWS/ApplicationELB', numerator: 'HTTPCode_Target_5XX_Count', denominator: 'RequestCount' },
      comparison: 'GreaterThanThreshold',
      threshold: 5,
      periodS: 60,
      evaluationPeriods: 5,
      treatMissingData: 'notBreaching',
    },
    {
      suffix: 'gateway-memory',
      alert: 'ReplyxGatewayMemoryPerConnection',
      runbook: 'runbooks/gateway-capacity.md',
      description: 'The gateway service used more than 80% of its task memory for 15 minutes (stands for ReplyxGatewayMemoryPerConnection). Runbook: runbooks/gateway-capacity.md',
      subject: { kind: 'ecs-service', service: 'gateway' },
      metric: { kind: 'single', namespace: 'AWS/ECS', name: 'MemoryUtilization', statistic: 'Average' },
      comparison: 'GreaterThanThreshold',
      threshold: 80,
      periodS: 300,
      evaluationPeriods: 3,
      treatMissingData: 'notBreaching',
    },
  ];
}

/** What the alarms point at: names and ARN suffixes only the deployed resources know. */
export interface AlarmsArgs {
  readonly topology: Topology;
  readonly stack: string;
  readonly clusterName: pulumi.Input<string>;
  readonly serviceNames: Readonly<Record<AwsServiceName, pulumi.Input<string>>>;
  /** `app/<name>/<id>`: the load balancer's CloudWatch dimension. */
  readonly loadBalancerArnSuffix: pulumi.Input<string>;
  readonly tags: Readonly<Record<string, string>>;
}

/** `replyx:aws:Alarms`: one CloudWatch alarm per planned condition, notifying `monitoring.alarmTopicArn` when set. */
export class Alarms extends pulumi.ComponentResource {
  /** Alarm names by the alert they stand for. */
  readonly names: Record<string, pulumi.Output<string>> = {};

  /** Creates the alarms of `planAlarms(args.topology)`. */
  constructor(name: string, args: AlarmsArgs, opts?: pulumi.ComponentResourceOptions) {
    super('replyx:aws:Alarms', name, {}, opts);
    const topic = args.topology.monitoring.alarmTopicArn;
    const actions = topic === undefined ? {} : { alarmActions: [topic], okActions: [topic] };
    for (const plan of planAlarms()) {
      const dimensions: Record<string, pulumi.Input<string>> =
        plan.subject.kind === 'load-balancer' ? { LoadBalancer: args.loadBalancerArnSuffix } : { ClusterName: args.clusterName, ServiceName: args.serviceNames[plan.subject.service] };
      const metric =
        plan.metric.kind === 'single'
          ? { namespace: plan.metric.namespace, metricName: plan.metric.name, statistic: plan.metric.statistic, period: plan.periodS, dimensions }
          : {
              metricQueries: [
                { id: 'errors', metric: { namespace: plan.metric.namespace, metricName: plan.metric.numerator, stat: 'Sum', period: plan.periodS, dimensions } },
                { id: 'requests', metric: { namespace: plan.metric.namespace, metricName: plan.metric.denominator, stat: 'Sum', period: plan.periodS, dimensions } },
                { id: 'ratio', expression: '100 * errors / requests', label: `${plan.metric.numerator} per ${plan.metric.denominator} (%)`, returnData: true },
              ],
            };
      const alarm = new aws.cloudwatch.MetricAlarm(
        `${name}-${plan.suffix}`,
        {
          name: `${args.topology.name}-${args.stack}-${plan.suffix}`,
          alarmDescription: plan.description,
          comparisonOperator: plan.comparison,
          threshold: plan.threshold,
          evaluationPeriods: plan.evaluationPeriods,
          treatMissingData: plan.treatMissingData,
          ...metric,
          ...actions,
          tags: { ...args.tags, 'replyx:alert': plan.alert },
        },
        { parent: this },
      );
      this.names[plan.alert] = alarm.name;
    }
    this.registerOutputs({ names: this.names });
  }
}
