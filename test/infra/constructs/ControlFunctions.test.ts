/**
 * The control functions as deployed: the real handlers (functions/<name>/handler.ts) bundled by
 * esbuild once for this file, their settings, wiring and permissions, and the bundles
 * themselves: each loads and exports `handler`, carries the .proto files, and the tokens bundle
 * issues tokens a gateway's ring verifies.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ALERT_RECEIVERS_ARN_ENV,
  INITIAL_ALERT_RECEIVERS,
} from '../../../infra/constructs/AlertReceivers.js';
import { EVENT_BUS_ENV } from '../../../infra/constructs/ControlBus.js';
import { protoFiles } from '../../../infra/constructs/bundling.js';
import { TABLE_ENV } from '../../../infra/constructs/StreamhealTables.js';
import { KEY_RING_ARN_ENV } from '../../../infra/constructs/TokenKeys.js';
import {
  ControlFunctionNames,
  controlFunctionDefaults,
  type ControlFunctionName,
} from '../../../infra/defaults.js';
import { ALERT_TARGETS_SECRET_ARN_ENV } from '../../../functions/alerts/receivers.js';
import { parseAlertTargets } from '../../../shared/control/alerts/targets.js';
import { verifyRedirectToken } from '../../../shared/redirectTokens.js';
import { MemoryStore } from '../../../shared/store/MemoryStore.js';
import { keyRingFromSecret } from '../../../shared/tokens.js';
import { synthStreamheal, type Synthesized } from '../support/synth.js';

interface FunctionProperties {
  Runtime: string;
  Architectures: string[];
  MemorySize: number;
  Timeout: number;
  ReservedConcurrentExecutions?: number;
  VpcConfig?: { SubnetIds: unknown[]; SecurityGroupIds: unknown[] };
  Environment: { Variables: Record<string, unknown> };
  TracingConfig?: { Mode: string };
  Role: unknown;
}

describe('ControlFunctions', () => {
  let synth: Synthesized;
  const props = (name: ControlFunctionName): FunctionProperties => {
    const control = synth.stacks.control;
    const fn = control.functions!.functions[name].function;
    return synth.template(control).toJSON().Resources[
      control.getLogicalId(fn.node.defaultChild as never)
    ].Properties as FunctionProperties;
  };
  const bundleDir = (name: ControlFunctionName) => {
    const control = synth.stacks.control;
    const fn = control.functions!.functions[name].function;
    const key = synth.template(control).toJSON().Resources[
      control.getLogicalId(fn.node.defaultChild as never)
    ].Properties.Code.S3Key as string;
    // The staged bundle sits in cdk.out as asset.<hash>, the object key is <hash>.zip.
    return join(synth.outdir, `asset.${key.replace(/\.zip$/, '')}`);
  };
  /** The statements of the function's own policy (its role's default policy). */
  const statements = (name: ControlFunctionName) => {
    const control = synth.stacks.control;
    const role = control.functions!.functions[name].function.role!;
    const policy = role.node.tryFindChild('DefaultPolicy');
    const id = control.getLogicalId(policy!.node.defaultChild as never);
    return synth.template(control).toJSON().Resources[id].Properties.PolicyDocument
      .Statement as Array<{
      Action: string | string[];
      Resource: unknown;
    }>;
  };
  const actions = (name: ControlFunctionName) =>
    statements(name).flatMap((s) => (Array.isArray(s.Action) ? s.Action : [s.Action]));

  beforeAll(() => {
    synth = synthStreamheal('dynamodb', { bundle: true, realHandlers: true });
  }, 240_000);

  it('runs each function on Node.js 24, ARM64, traced, with its memory, timeout and reserved concurrency', () => {
    for (const name of ControlFunctionNames) {
      const defaults = controlFunctionDefaults(name);
      expect(props(name), name).toMatchObject({
        Runtime: 'nodejs24.x',
        Architectures: ['arm64'],
        MemorySize: defaults.memoryMiB,
        Timeout: defaults.timeout.toSeconds(),
        TracingConfig: { Mode: 'Active' },
      });
      expect(props(name).ReservedConcurrentExecutions, name).toBe(defaults.reservedConcurrency);
    }
    expect(props('decide').ReservedConcurrentExecutions).toBe(10);
  });

  it('puts decide and nodeLost in the VPC with the control security group, the others outside', () => {
    const control = synth.stacks.control;
    const group = control.resolve(
      synth.stacks.network.network.controlSecurityGroup.securityGroupId,
    );
    for (const name of ['decide', 'nodeLost'] as const) {
      expect(props(name).VpcConfig?.SecurityGroupIds, name).toEqual([group]);
      expect(props(name).VpcConfig?.SubnetIds.length, name).toBeGreaterThan(0);
    }
    for (const name of ['tokens', 'alerts'] as const)
      expect(props(name).VpcConfig, name).toBeUndefined();
  });

  it('retries asynchronous invocations explicitly and sends failures to the function dead-letter queue', () => {
    const control = synth.stacks.control;
    const template = synth.template(control).toJSON().Resources as Record<
      string,
      { Type: string; Properties: Record<string, unknown> }
    >;
    const configs = Object.values(template).filter(
      (r) => r.Type === 'AWS::Lambda::EventInvokeConfig',
    );
    expect(configs).toHaveLength(4);
    for (const name of ControlFunctionNames) {
      const fn = control.functions!.functions[name];
      const defaults = controlFunctionDefaults(name);
      const config = configs.find(
        (c) =>
          JSON.stringify(c.Properties.FunctionName) ===
          JSON.stringify(control.resolve(fn.function.functionName)),
      );
      expect(config?.Properties, name).toMatchObject({
        MaximumRetryAttempts: defaults.asyncRetryAttempts,
        MaximumEventAgeInSeconds: defaults.asyncMaxEventAge.toSeconds(),
        DestinationConfig: {
          OnFailure: { Destination: control.resolve(fn.deadLetterQueue.queueArn) },
        },
      });
    }
  });

  it('wires each function with the variables its handler reads, and secrets by ARN only', () => {
    const env = (name: ControlFunctionName) => props(name).Environment.Variables;
    for (const name of ['decide', 'nodeLost', 'alerts'] as const) {
      expect(env(name).STREAMHEAL_STORE, name).toBe('dynamodb');
      for (const variable of Object.values(TABLE_ENV))
        expect(env(name)[variable], `${name} ${variable}`).toBeDefined();
      expect(env(name).STREAMHEAL_HISTORY_MAX_COUNT, name).toBe('10000');
    }
    for (const name of ['decide', 'nodeLost'] as const) {
      expect(env(name)[EVENT_BUS_ENV], name).toBeDefined();
    }
    for (const name of ['decide', 'nodeLost', 'tokens'] as const) {
      expect(typeof env(name)[KEY_RING_ARN_ENV], name).toBe('object');
    }
    expect(env('tokens').STREAMHEAL_STORE).toBeUndefined();
    expect(env('alerts')[KEY_RING_ARN_ENV]).toBeUndefined();
    expect(env('alerts')[EVENT_BUS_ENV]).toBeUndefined();
    // The receivers secret by ARN, under the name the handler reads, to alerts only.
    expect(ALERT_RECEIVERS_ARN_ENV).toBe(ALERT_TARGETS_SECRET_ARN_ENV);
    const control = synth.stacks.control;
    const receivers = control.functions!.alertReceivers.secret;
    expect(env('alerts')[ALERT_RECEIVERS_ARN_ENV]).toEqual(control.resolve(receivers.secretArn));
    for (const name of ['decide', 'nodeLost', 'tokens'] as const) {
      expect(env(name)[ALERT_RECEIVERS_ARN_ENV], name).toBeUndefined();
    }
  });

  it('creates the alert receivers secret with no receivers, its format described, and outputs its name', () => {
    const control = synth.stacks.control;
    const secret = control.functions!.alertReceivers.secret;
    const template = synth.template(control).toJSON();
    const properties = template.Resources[control.getLogicalId(secret.node.defaultChild as never)]
      .Properties as { SecretString: string; Description: string; GenerateSecretString?: unknown };
    expect(properties.SecretString).toBe(INITIAL_ALERT_RECEIVERS);
    expect(parseAlertTargets(JSON.parse(properties.SecretString))).toEqual([]);
    expect(properties.GenerateSecretString).toBeUndefined();
    expect(properties.Description).toContain('JSON list');
    expect(properties.Description).toMatch(/"type":"webhook".*"type":"slack".*"type":"pagerduty"/);
    expect(properties.Description.length).toBeLessThanOrEqual(2048);
    expect(template.Outputs.AlertReceiversSecret.Value).toEqual(control.resolve(secret.secretName));
  });

  it('grants each function only what it uses', () => {
    expect(actions('decide')).toEqual(
      expect.arrayContaining([
        'dynamodb:PutItem',
        'events:PutEvents',
        'secretsmanager:GetSecretValue',
      ]),
    );
    expect(actions('nodeLost')).toEqual(
      expect.arrayContaining([
        'dynamodb:PutItem',
        'events:PutEvents',
        'secretsmanager:GetSecretValue',
      ]),
    );
    expect(
      actions('tokens').filter((a) => a.startsWith('dynamodb:') || a.startsWith('events:')),
    ).toEqual([]);
    expect(actions('tokens')).toContain('secretsmanager:GetSecretValue');
    expect(actions('alerts')).toContain('dynamodb:PutItem');
    expect(actions('alerts').filter((a) => a.startsWith('events:'))).toEqual([]);
    // Secrets Manager: the receivers secret and nothing else (not the key ring, not "*").
    const control = synth.stacks.control;
    const receiversArn = control.resolve(control.functions!.alertReceivers.secret.secretArn);
    const secretStatements = (name: ControlFunctionName) =>
      statements(name).filter((s) =>
        (Array.isArray(s.Action) ? s.Action : [s.Action]).some((a) =>
          a.startsWith('secretsmanager:'),
        ),
      );
    const alertsSecrets = secretStatements('alerts');
    expect(alertsSecrets).toHaveLength(1);
    expect(alertsSecrets[0]!.Action).toEqual([
      'secretsmanager:GetSecretValue',
      'secretsmanager:DescribeSecret',
    ]);
    expect(alertsSecrets[0]!.Resource).toEqual(receiversArn);
    for (const name of ['decide', 'nodeLost', 'tokens'] as const) {
      for (const statement of secretStatements(name)) {
        expect(JSON.stringify(statement.Resource), name).not.toContain(
          JSON.stringify(receiversArn),
        );
      }
    }
    for (const name of ControlFunctionNames) {
      expect(
        actions(name).filter((a) => a.includes('*')),
        name,
      ).toEqual([]);
      expect(actions(name), name).toContain('logs:PutLogEvents');
    }
  });

  it('makes alerts redeliver its dead letters on a schedule, with the same retry policy and DLQ', () => {
    const control = synth.stacks.control;
    const rule = control.redelivery!;
    const properties = synth.template(control).toJSON().Resources[
      control.getLogicalId(rule.node.defaultChild as never)
    ].Properties;
    const alerts = control.functions!.functions.alerts;
    expect(properties.ScheduleExpression).toBe('rate(10 minutes)');
    expect(properties.Targets[0]).toMatchObject({
      Arn: control.resolve(alerts.function.functionArn),
      RetryPolicy: { MaximumRetryAttempts: controlFunctionDefaults('alerts').targetRetryAttempts },
      DeadLetterConfig: { Arn: control.resolve(alerts.deadLetterQueue.queueArn) },
    });
  });

  describe('bundles', () => {
    const saved = { ...process.env };
    afterAll(() => {
      for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key];
      Object.assign(process.env, saved);
    });

    it('load as ES modules exporting handler, with the .proto files beside them', async () => {
      const protos = protoFiles();
      expect(protos).toContain('shared/protocol/control.proto');
      for (const name of ControlFunctionNames) {
        const dir = bundleDir(name);
        for (const proto of protos) {
          expect(existsSync(join(dir, proto.split('/').pop()!)), `${name} ${proto}`).toBe(true);
        }
        const module = (await import(pathToFileURL(join(dir, 'index.mjs')).href)) as {
          handler?: unknown;
        };
        expect(typeof module.handler, name).toBe('function');
      }
    });

    it('issue tokens a gateway ring verifies (the tokens bundle, run as Lambda would)', async () => {
      const ring = 'k1:0123456789abcdef0123456789abcdef,k0:fedcba9876543210fedcba9876543210';
      process.env.STREAMHEAL_TOKEN_KEYS = ring;
      const module = (await import(pathToFileURL(join(bundleDir('tokens'), 'index.mjs')).href)) as {
        handler: (
          request: unknown,
        ) => Promise<{ tokens: Array<{ token: string; claims: { keyId: string } }> }>;
      };
      const answer = await module.handler({
        sessionId: 's-1',
        sourceNode: 'gw-a',
        targetNode: 'gw-b',
      });
      expect(answer.tokens).toHaveLength(1);
      expect(answer.tokens[0]!.claims.keyId).toBe('k1');
      const store = new MemoryStore();
      await expect(
        verifyRedirectToken(keyRingFromSecret(ring), answer.tokens[0]!.token, {
          expectedTarget: 'gw-b',
          store,
        }),
      ).resolves.toMatchObject({ sessionId: 's-1', sourceNode: 'gw-a', targetNode: 'gw-b' });
      await store.close();
    });
  });
});
