/**
 * cdk-nag on the whole app (AwsSolutions pack) and the one way findings are acknowledged here:
 * `acknowledge(scope, rule, reason)`, on the construct the finding is about, with a reason a
 * reviewer can check. test/infra/nag.test.ts synthesizes every stack of both store options and
 * fails on any finding left, and on any acknowledgement without a real reason.
 */
import { Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';

/** Shortest reason accepted: a word or two is not a reason. */
export const MIN_REASON_LENGTH = 30;

export function applyNagChecks(app: IConstruct): void {
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
}

/**
 * Acknowledges one cdk-nag rule (`AwsSolutions-IAM5`, or a finding of it such as
 * `AwsSolutions-IAM5[Resource::*]`) on `scope` and everything below it.
 */
export function acknowledge(scope: IConstruct, rule: string, reason: string): void {
  if (reason.trim().length < MIN_REASON_LENGTH) {
    throw new Error(`acknowledging ${rule} needs a reason of ${MIN_REASON_LENGTH}+ characters`);
  }
  Validations.of(scope).acknowledge({ id: rule, reason });
}
