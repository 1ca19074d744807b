/**
 * Where decisions and alarms go: an SNS topic (KMS-encrypted; decision events reach it through
 * an EventBridge rule, CloudWatch alarms publish to it, e-mail can subscribe), and EventBridge
 * API destinations that
 * post decision events straight to webhook receivers: a generic one (the whole event as JSON),
 * Slack (chat.postMessage) and PagerDuty (Events API v2). Their rules match the catalogue's
 * `alerts` entry (shared/bus/catalogue.ts), so they see exactly the decision events the alerts
 * function sees. Credentials live in Secrets Manager secrets you create beforehand; the template
 * holds only a dynamic reference to them, and EventBridge keeps its own copy in the connection.
 */
import { SecretValue, type Duration } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { catalogue, type CatalogueEntry } from '../../shared/bus/catalogue.js';
import { DecisionEvents } from '../../shared/bus/controlEvents.js';
import { alertingDefaults, functionsDefaults } from '../defaults.js';
import { toCdkPattern } from './CatalogueRules.js';
import { deadLetterQueue } from './deadLetterQueue.js';

export interface WebhookReceiver {
  /** HTTPS endpoint that receives every decision event as JSON (POST). */
  readonly url: string;
  /** Name or ARN of a Secrets Manager secret holding the header's value. */
  readonly authSecret: string;
  /** Header the secret is sent in. @default 'Authorization' */
  readonly authHeader?: string;
}

export interface SlackReceiver {
  /** Channel id or name the bot posts to. */
  readonly channel: string;
  /** Name or ARN of a secret holding `Bearer xoxb-...` (a bot token with chat:write). */
  readonly tokenSecret: string;
}

export interface PagerDutyReceiver {
  /** Name or ARN of a secret holding the Events API v2 integration (routing) key. */
  readonly routingKeySecret: string;
}

export interface AlertingOptions {
  /** An e-mail address subscribed to the topic. @default none */
  readonly email?: string;
  /** @default none */
  readonly webhook?: WebhookReceiver;
  /** @default none */
  readonly slack?: SlackReceiver;
  /** @default none */
  readonly pagerDuty?: PagerDutyReceiver;
  /** @default alertingDefaults().invocationRateLimitPerSecond (5) */
  readonly invocationRateLimitPerSecond?: number;
  /** @default alertingDefaults().retryAttempts (8) */
  readonly retryAttempts?: number;
  /** @default alertingDefaults().maxEventAge (2 h) */
  readonly maxEventAge?: Duration;
}

export interface AlertingProps extends AlertingOptions {
  /** The deployment's bus, where decision events are put. */
  readonly bus: events.IEventBus;
}

/**
 * Decisions that need a human: PagerDuty opens an incident (dedup by node). The same ones the
 * alerts function pages on by default (DEFAULT_PAGERDUTY_DETAIL_TYPES), plus an opened circuit.
 */
export const PAGE_ON: readonly string[] = [
  DecisionEvents.nodeIsolated,
  DecisionEvents.isolationSuppressed,
  DecisionEvents.nodeDeclaredLost,
  DecisionEvents.migrationFailed,
  DecisionEvents.circuitOpened,
];
/** Decisions that end what PAGE_ON started: PagerDuty resolves the node's incident. */
export const RESOLVE_ON: readonly string[] = [
  DecisionEvents.nodeReinstated,
  DecisionEvents.circuitClosed,
];

/** The catalogue entry whose events alerting receives. */
export function alertsEntry(): CatalogueEntry {
  const entry = catalogue().find((candidate) => candidate.target === 'alerts');
  if (!entry) throw new Error('the catalogue has no alerts entry');
  return entry;
}

export class Alerting extends Construct {
  readonly topic: sns.Topic;
  readonly key: kms.Key;
  readonly deadLetterQueue: sqs.Queue;
  readonly rules: events.Rule[] = [];

  constructor(scope: Construct, id: string, props: AlertingProps) {
    super(scope, id);
    const defaults = alertingDefaults();
    this.key = new kms.Key(this, 'TopicKey', {
      description: 'streamheal alert topic',
      enableKeyRotation: true,
    });
    // Alarms and EventBridge publish through their service principals, which need the key.
    for (const service of ['cloudwatch.amazonaws.com', 'events.amazonaws.com']) {
      this.key.addToResourcePolicy(
        new iam.PolicyStatement({
          principals: [new iam.ServicePrincipal(service)],
          actions: ['kms:GenerateDataKey', 'kms:Decrypt'],
          resources: ['*'],
        }),
      );
    }
    this.topic = new sns.Topic(this, 'Topic', {
      displayName: 'streamheal alerts',
      masterKey: this.key,
      enforceSSL: true,
    });
    if (props.email) this.topic.addSubscription(new subscriptions.EmailSubscription(props.email));

    this.deadLetterQueue = deadLetterQueue(this, 'DeadLetters', functionsDefaults().dlqRetention);
    const entry = alertsEntry();
    const decisions = new events.Rule(this, 'TopicRule', {
      eventBus: props.bus,
      description: `${entry.name} to the alert topic`,
      eventPattern: toCdkPattern(entry.pattern),
    });
    decisions.addTarget(
      new targets.SnsTopic(this.topic, {
        retryAttempts: props.retryAttempts ?? defaults.retryAttempts,
        maxEventAge: props.maxEventAge ?? defaults.maxEventAge,
        deadLetterQueue: this.deadLetterQueue,
        message: events.RuleTargetInput.fromObject({
          summary: `streamheal: ${events.EventField.fromPath('$.detail-type')} (node ${events.EventField.fromPath('$.detail.node')})`,
          time: events.EventField.fromPath('$.time'),
          decision: events.EventField.fromPath('$.detail'),
        }),
      }),
    );
    this.rules.push(decisions);
    const rate = props.invocationRateLimitPerSecond ?? defaults.invocationRateLimitPerSecond;
    const targetOptions = {
      retryAttempts: props.retryAttempts ?? defaults.retryAttempts,
      maxEventAge: props.maxEventAge ?? defaults.maxEventAge,
      deadLetterQueue: this.deadLetterQueue,
    };
    const detailType = events.EventField.fromPath('$.detail-type');
    const node = events.EventField.fromPath('$.detail.node');
    const time = events.EventField.fromPath('$.time');

    if (props.webhook) {
      const connection = new events.Connection(this, 'WebhookConnection', {
        description: 'streamheal generic webhook',
        authorization: events.Authorization.apiKey(
          props.webhook.authHeader ?? 'Authorization',
          SecretValue.secretsManager(props.webhook.authSecret),
        ),
      });
      const destination = new events.ApiDestination(this, 'Webhook', {
        connection,
        endpoint: props.webhook.url,
        httpMethod: events.HttpMethod.POST,
        rateLimitPerSecond: rate,
        description: 'streamheal decision events, as EventBridge delivers them',
      });
      this.addRule('WebhookRule', props.bus, entry, undefined, destination, targetOptions);
    }

    if (props.slack) {
      const connection = new events.Connection(this, 'SlackConnection', {
        description: 'streamheal Slack (chat.postMessage)',
        authorization: events.Authorization.apiKey(
          'Authorization',
          SecretValue.secretsManager(props.slack.tokenSecret),
        ),
      });
      const destination = new events.ApiDestination(this, 'Slack', {
        connection,
        endpoint: 'https://slack.com/api/chat.postMessage',
        httpMethod: events.HttpMethod.POST,
        rateLimitPerSecond: Math.min(rate, 1),
        description: 'streamheal decisions to Slack',
      });
      this.addRule('SlackRule', props.bus, entry, undefined, destination, {
        ...targetOptions,
        event: events.RuleTargetInput.fromObject({
          channel: props.slack.channel,
          text: `streamheal: ${detailType} (node ${node}) at ${time}`,
        }),
      });
    }

    if (props.pagerDuty) {
      const connection = new events.Connection(this, 'PagerDutyConnection', {
        description: 'streamheal PagerDuty (Events API v2)',
        // PagerDuty authenticates by the routing key in the body; the connection still needs
        // an authorization, so the key also rides in a header PagerDuty ignores.
        authorization: events.Authorization.apiKey(
          'X-Routing-Key',
          SecretValue.secretsManager(props.pagerDuty.routingKeySecret),
        ),
        bodyParameters: {
          routing_key: events.HttpParameter.fromSecret(
            SecretValue.secretsManager(props.pagerDuty.routingKeySecret),
          ),
        },
      });
      const destination = new events.ApiDestination(this, 'PagerDuty', {
        connection,
        endpoint: 'https://events.pagerduty.com/v2/enqueue',
        httpMethod: events.HttpMethod.POST,
        rateLimitPerSecond: rate,
        description: 'streamheal decisions to PagerDuty',
      });
      for (const [ruleId, action, types] of [
        ['PagerDutyTrigger', 'trigger', PAGE_ON],
        ['PagerDutyResolve', 'resolve', RESOLVE_ON],
      ] as const) {
        this.addRule(ruleId, props.bus, entry, types, destination, {
          ...targetOptions,
          event: events.RuleTargetInput.fromObject({
            event_action: action,
            dedup_key: `streamheal-${node}`,
            payload: {
              summary: `streamheal: ${detailType} (node ${node})`,
              source: node,
              severity: 'error',
              timestamp: time,
              custom_details: events.EventField.fromPath('$.detail'),
            },
          }),
        });
      }
    }
  }

  private addRule(
    id: string,
    bus: events.IEventBus,
    entry: CatalogueEntry,
    detailTypes: readonly string[] | undefined,
    destination: events.ApiDestination,
    options: targets.ApiDestinationProps,
  ): void {
    const pattern = detailTypes
      ? { ...entry.pattern, 'detail-type': [...detailTypes] }
      : entry.pattern;
    const rule = new events.Rule(this, id, {
      eventBus: bus,
      description: `${entry.name} to ${id.replace(/Rule$/, '')}`,
      eventPattern: toCdkPattern(pattern),
    });
    rule.addTarget(new targets.ApiDestination(destination, options));
    this.rules.push(rule);
  }
}
