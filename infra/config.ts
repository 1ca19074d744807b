/**
 * App props from CDK context (`cdk synth -c store=etcd`, or the `context` of cdk.json), so a
 * deployment is chosen on the command line without editing code. Every key is optional; the
 * table in docs/deploy.md lists them. Unknown `streamheal:`-free keys are ignored (CDK keeps its
 * own context there too); malformed values fail synth with the key's name.
 */
import type { Environment } from 'aws-cdk-lib';
import type { Node } from 'constructs';
import { parsePublicUrl } from '../shared/redirectTokens.js';
import type { AlertingOptions } from './constructs/Alerting.js';
import type { ControlFunctionOptions } from './constructs/ControlFunction.js';
import {
  ControlFunctionNames,
  CpuArchitectures,
  StoreKinds,
  type ControlFunctionName,
  type CpuArchitectureName,
  type StoreKind,
} from './defaults.js';
import type { StreamhealAppProps } from './streamhealApp.js';

/** Context keys the app reads, with what they set. */
export const CONTEXT_KEYS = {
  store: 'dynamodb | etcd (default dynamodb)',
  stackPrefix: 'prefix of stack names (default Streamheal)',
  certificateArn: 'ACM certificate: TLS listener on 443 (default: TCP listener on 80)',
  publicUrl: 'URL clients use, e.g. https://push.example.com (default: the load balancer DNS name)',
  clientCidrs: 'comma-separated IPv4 CIDRs allowed to the listener (default 0.0.0.0/0)',
  natGateways: 'NAT gateways (default 1)',
  maxAzs: 'availability zones (default 2 environment-agnostic, 3 with an account and region)',
  availabilityZones: 'comma-separated AZ names (needs an account and region)',
  cpuArchitecture: 'arm64 | x86_64 for the gateway and orchestrator tasks (default arm64)',
  gatewayDesiredCount: 'gateway tasks at creation (default 2)',
  gatewayMinCapacity: 'autoscaling minimum (default 2)',
  gatewayMaxCapacity: 'autoscaling maximum (default 10)',
  otelCollector: 'true: run an OpenTelemetry collector beside each gateway (default false)',
  deletionProtection: 'false: let the tables be deleted (default true)',
  tableNamePrefix: 'fixed table names <prefix>channels, ... (default generated names)',
  reservedConcurrency: 'false: reserve no Lambda concurrency (accounts with a low limit)',
  alertEmail: 'e-mail address subscribed to the alert topic',
  webhookUrl: 'generic webhook receiver (needs webhookAuthSecret)',
  webhookAuthSecret: 'secret (name or ARN) with the webhook header value',
  webhookAuthHeader: 'header carrying it (default Authorization)',
  slackChannel: 'Slack channel for decisions (needs slackTokenSecret)',
  slackTokenSecret: 'secret (name or ARN) holding "Bearer xoxb-..."',
  pagerDutyRoutingKeySecret: 'secret (name or ARN) holding the PagerDuty Events v2 routing key',
  etcdInstanceType: 'etcd member instance type (default t4g.small)',
  etcdVersion: 'etcd release (default v3.5.17)',
  etcdSha256: 'SHA-256 of the etcd release tarball (default: checked against SHA256SUMS)',
} as const;

export class ContextError extends Error {}

type Raw = (key: keyof typeof CONTEXT_KEYS) => unknown;

function text(raw: Raw, key: keyof typeof CONTEXT_KEYS): string | undefined {
  const value = raw(key);
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') {
    throw new ContextError(`context "${key}" must be a string, got ${JSON.stringify(value)}`);
  }
  return String(value).trim();
}

function oneOf<T extends string>(
  raw: Raw,
  key: keyof typeof CONTEXT_KEYS,
  allowed: readonly T[],
): T | undefined {
  const value = text(raw, key);
  if (value === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(value)) {
    throw new ContextError(`context "${key}" must be one of ${allowed.join(', ')}, got "${value}"`);
  }
  return value as T;
}

function count(raw: Raw, key: keyof typeof CONTEXT_KEYS, min = 0): number | undefined {
  const value = text(raw, key);
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (!Number.isSafeInteger(parsed) || parsed < min) {
    throw new ContextError(`context "${key}" must be a whole number >= ${min}, got "${value}"`);
  }
  return parsed;
}

function flag(raw: Raw, key: keyof typeof CONTEXT_KEYS): boolean | undefined {
  const value = text(raw, key);
  if (value === undefined) return undefined;
  if (/^(true|1|yes)$/i.test(value)) return true;
  if (/^(false|0|no)$/i.test(value)) return false;
  throw new ContextError(`context "${key}" must be true or false, got "${value}"`);
}

function list(raw: Raw, key: keyof typeof CONTEXT_KEYS): string[] | undefined {
  const value = text(raw, key);
  if (value === undefined) return undefined;
  const items = value
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean);
  return items.length > 0 ? items : undefined;
}

function url(raw: Raw, key: keyof typeof CONTEXT_KEYS): string | undefined {
  const value = text(raw, key);
  if (value === undefined) return undefined;
  try {
    return parsePublicUrl(value);
  } catch (error) {
    throw new ContextError(`context "${key}": ${(error as Error).message}`);
  }
}

function defined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

/** Props for buildStreamheal from the app's context (and account/region from the CDK CLI). */
export function propsFromContext(
  node: Pick<Node, 'tryGetContext'>,
  environment: Record<string, string | undefined> = process.env,
): StreamhealAppProps {
  const raw: Raw = (key) => node.tryGetContext(key);
  const store: StoreKind | undefined = oneOf(raw, 'store', StoreKinds);
  const architecture: CpuArchitectureName | undefined = oneOf(
    raw,
    'cpuArchitecture',
    CpuArchitectures,
  );
  const account = environment.CDK_DEFAULT_ACCOUNT;
  const region = environment.CDK_DEFAULT_REGION;
  const env: Environment | undefined = account && region ? { account, region } : undefined;

  const webhookUrl = text(raw, 'webhookUrl');
  const webhookAuthSecret = text(raw, 'webhookAuthSecret');
  if (webhookUrl !== undefined && webhookAuthSecret === undefined) {
    throw new ContextError('context "webhookUrl" needs "webhookAuthSecret"');
  }
  const slackChannel = text(raw, 'slackChannel');
  const slackTokenSecret = text(raw, 'slackTokenSecret');
  if ((slackChannel === undefined) !== (slackTokenSecret === undefined)) {
    throw new ContextError('contexts "slackChannel" and "slackTokenSecret" go together');
  }
  const webhookAuthHeader = text(raw, 'webhookAuthHeader');
  const pagerDutyRoutingKeySecret = text(raw, 'pagerDutyRoutingKeySecret');
  const alertEmail = text(raw, 'alertEmail');
  const alerting: AlertingOptions = defined({
    email: alertEmail,
    webhook:
      webhookUrl && webhookAuthSecret
        ? defined({ url: webhookUrl, authSecret: webhookAuthSecret, authHeader: webhookAuthHeader })
        : undefined,
    slack:
      slackChannel && slackTokenSecret
        ? { channel: slackChannel, tokenSecret: slackTokenSecret }
        : undefined,
    pagerDuty: pagerDutyRoutingKeySecret
      ? { routingKeySecret: pagerDutyRoutingKeySecret }
      : undefined,
  });

  const reserved = flag(raw, 'reservedConcurrency');
  const functions: Partial<Record<ControlFunctionName, ControlFunctionOptions>> | undefined =
    reserved === false
      ? Object.fromEntries(
          ControlFunctionNames.map((name) => [name, { reservedConcurrency: null }]),
        )
      : undefined;

  return defined({
    store,
    stackPrefix: text(raw, 'stackPrefix'),
    env,
    network: defined({
      clientCidrs: list(raw, 'clientCidrs'),
      natGateways: count(raw, 'natGateways'),
      maxAzs: count(raw, 'maxAzs', 1),
      availabilityZones: list(raw, 'availabilityZones'),
    }),
    tables: defined({
      deletionProtection: flag(raw, 'deletionProtection'),
      tableNamePrefix: text(raw, 'tableNamePrefix'),
    }),
    etcd: defined({
      instanceType: text(raw, 'etcdInstanceType'),
      version: text(raw, 'etcdVersion'),
      sha256: text(raw, 'etcdSha256'),
    }),
    gateway: defined({
      certificateArn: text(raw, 'certificateArn'),
      publicUrl: url(raw, 'publicUrl'),
      cpuArchitecture: architecture,
      desiredCount: count(raw, 'gatewayDesiredCount', 1),
      minCapacity: count(raw, 'gatewayMinCapacity', 1),
      maxCapacity: count(raw, 'gatewayMaxCapacity', 1),
      otelCollector: flag(raw, 'otelCollector'),
    }),
    alerting,
    functions,
  });
}
