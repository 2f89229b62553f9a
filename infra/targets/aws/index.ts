// The AWS target (`replyx:target: aws`): the same topology on ECS Fargate behind an ALB, with
// ElastiCache Redis and RDS Postgres. infra/program.ts imports this module only for that target.

import type { Topology, TopologyIssue } from '../../topology/index.js';
import { createAwsStack, type AwsStackOutputs } from './stack.js';

export { createAwsStack, AwsStack, type AwsStackOptions, type AwsStackOutputs } from './stack.js';
export { planAwsNetwork, Network, type NetworkPlan } from './network.js';
export { planSecurityGroups, securityRulesFor, SecurityGroups, AWS_REDIS_PORT, AWS_POSTGRES_PORT, type AllowedFlow } from './security.js';
export { planTaskDefinitions, healthCheckCommand, nginxStartScript, NGINX_START_SCRIPT, CONTAINER_NAMES, AWS_SERVICES, type AwsServiceName, type TaskPlan, type ContainerDefinition } from './tasks.js';
export { planServices, planLoadBalancer, planNames, Services, NGINX_TASKS, type ServicePlan } from './services.js';
export { planData, redisUrl, databaseUrl, Data } from './data.js';
export { planExecutionPolicy } from './iam.js';
export { planImages, Images } from './images.js';
export {
  planAwsRollback,
  runAwsRollback,
  parseServiceRollouts,
  parseStackOutputs,
  describeServicesCommand,
  runCommand,
  type AwsRollbackInput,
  type AwsRollbackPlan,
  type AwsRollbackResult,
  type AwsRollbackOptions,
  type ServiceRollout,
  type CommandRunner,
} from './rollback.js';

/** The target entry infra/program.ts calls: creates the stack and returns its outputs. */
export function deploy(args: { readonly topology: Topology; readonly warnings: readonly TopologyIssue[] }): AwsStackOutputs {
  return createAwsStack(args.topology);
}
