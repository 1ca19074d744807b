/**
 * The alerts function's receivers (functions/alerts/receivers.ts) in a Secrets Manager secret, so
 * Slack webhook URLs, PagerDuty routing keys and webhook signing secrets are never in a template
 * or a variable. Created holding `[]` (no receivers); the operator puts the real list with
 * `aws secretsmanager put-secret-value` (docs/deploy.md, "Alert receivers"). The function gets
 * the ARN (STREAMHEAL_ALERT_TARGETS_SECRET_ARN), read access to this secret only, and re-reads it
 * every 5 minutes, so an edit takes effect without a deploy.
 *
 * Keep the initial value `[]` unchanged in the template: CloudFormation writes SecretString again
 * only when it changes in the template, which would replace the operator's list.
 */
import { SecretValue } from 'aws-cdk-lib';
import type * as iam from 'aws-cdk-lib/aws-iam';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { acknowledge } from '../nag.js';

/** Variable that carries the secret's ARN to the alerts function (functions/alerts/receivers.ts). */
export const ALERT_RECEIVERS_ARN_ENV = 'STREAMHEAL_ALERT_TARGETS_SECRET_ARN';

/** The secret's value at creation: an empty receiver list. Not a secret. */
export const INITIAL_ALERT_RECEIVERS = '[]';

export class AlertReceivers extends Construct {
  readonly secret: secretsmanager.Secret;

  constructor(scope: Construct, id: string) {
    super(scope, id);
    this.secret = new secretsmanager.Secret(this, 'Secret', {
      description:
        'streamheal alert receivers of the alerts function: a JSON list, [] for none, e.g. ' +
        '[{"name":"ops","type":"webhook","url":"https://...","secret":"16+ chars"},' +
        '{"name":"chat","type":"slack","url":"https://hooks.slack.com/services/..."},' +
        '{"name":"pager","type":"pagerduty","routingKey":"..."}] (docs/control-plane.md, Targets). ' +
        'Read every 5 minutes.',
      // Encrypted at rest with the account's Secrets Manager key (aws/secretsmanager).
      secretStringValue: SecretValue.unsafePlainText(INITIAL_ALERT_RECEIVERS),
    });
    acknowledge(
      this.secret,
      'AwsSolutions-SMG4',
      'It holds receivers issued by third parties (Slack webhook URLs, PagerDuty routing keys, ' +
        'webhook signing secrets shared with their receivers); a rotation function cannot reissue ' +
        'them. The operator replaces them by hand (docs/deploy.md, "Alert receivers").',
    );
  }

  /** Read access to the secret (this secret only), and the variable naming it. */
  grantRead(grantee: iam.IGrantable): Record<string, string> {
    this.secret.grantRead(grantee);
    return { [ALERT_RECEIVERS_ARN_ENV]: this.secret.secretArn };
  }
}
