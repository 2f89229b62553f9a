/** One IAM policy statement (only Allow: everything not allowed is denied). */
export interface PolicyStatement {
  readonly Sid: string;
  readonly Effect: 'Allow';
  readonly Action: readonly string[];
  readonly Resource: readonly string[];
}

/** An IAM policy document. */
export interface PolicyDocument {
  readonly Version: '2012-10-17';
  readonly Statement: readonly PolicyStatement[];
}

/** The trust policy of both the execution and the task roles: only ECS tasks may assume them. */
export const ECS_TASKS_TRUST_POLICY = {
  Version: '2012-10-17',
  Statement: [{ Effect: 'Allow', Principal: { Service: 'ecs-tasks.amazonaws.com' }, Action: 'sts:AssumeRole' }],
} as const;

/** What one service's execution role needs, as resolved ARNs. */
export interface ExecutionPolicyInput {
  /** The service's log group ARN (without the trailing `:*`). */
  readonly logGroupArn: string;
  /** ECR repositories the service pulls from; empty when its image comes from another registry. */
  readonly repositoryArns: readonly string[];
  /** Exactly the secrets the service's container definition references. */
  readonly secretArns: readonly string[];
}

/**
 * The execution role policy of one service (pure): write to its own log group, pull from its
 * own ECR repository, read its own secrets. `ecr:GetAuthorizationToken` has no resource-level
 * permissions in IAM, so it is the only statement on `*`. Used instead of the broad
 * AmazonECSTaskExecutionRolePolicy, which allows every log group and repository.
 */
export function planExecutionPolicy(input: ExecutionPolicyInput): PolicyDocument {
  const statements: PolicyStatement[] = [
    { Sid: 'WriteOwnLogs', Effect: 'Allow', Action: ['logs:CreateLogStream', 'logs:PutLogEvents'], Resource: [`${input.logGroupArn}:*`] },
  ];
  if (input.repositoryArns.length > 0) {
    statements.push(
      { Sid: 'EcrLogin', Effect: 'Allow', Action: ['ecr:GetAuthorizationToken'], Resource: ['*'] },
      { Sid: 'PullOwnImage', Effect: 'Allow', Action: ['ecr:BatchCheckLayerAvailability', 'ecr:BatchGetImage', 'ecr:GetDownloadUrlForLayer'], Resource: [...input.repositoryArns] },
    );
  }
  if (input.secretArns.length > 0) {
    statements.push({ Sid: 'ReadOwnSecrets', Effect: 'Allow', Action: ['secretsmanager:GetSecretValue'], Resource: [...input.secretArns] });
  }
  return { Version: '2012-10-17', Statement: statements };
}
