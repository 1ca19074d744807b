/**
 * The whole app, both store options: every stack synthesizes offline, cdk-nag's AwsSolutions
 * pack leaves nothing unexplained, IAM never uses a wildcard action, no secret is in a template
 * or an environment variable, logs are kept for a set time, and the gateway image is staged from
 * the Dockerfile with only what .dockerignore lets through.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Validations } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';
import { beforeAll, describe, expect, it } from 'vitest';
import { INITIAL_ALERT_RECEIVERS } from '../../infra/constructs/AlertReceivers.js';
import { StoreKinds } from '../../infra/defaults.js';
import { MIN_REASON_LENGTH } from '../../infra/nag.js';
import { synthStreamheal, type Synthesized } from './support/synth.js';

const STACKS = ['Network', 'State', 'Gateway', 'Alerting', 'Control', 'Observability'];

/** Actions AWS offers no resource-level permissions for: the only ones allowed on Resource "*". */
const NO_RESOURCE_LEVEL = new Set([
  'xray:PutTraceSegments',
  'xray:PutTelemetryRecords',
  'xray:GetSamplingRules',
  'xray:GetSamplingTargets',
  'ec2:CreateNetworkInterface',
  'ec2:DescribeNetworkInterfaces',
  'ec2:DescribeSubnets',
  'ec2:DeleteNetworkInterface',
  'ec2:AssignPrivateIpAddresses',
  'ec2:UnassignPrivateIpAddresses',
  'ec2:DescribeVolumes',
  'ecr:GetAuthorizationToken',
  'secretsmanager:GetRandomPassword',
]);

interface Statement {
  Effect: string;
  Action: string | string[];
  Resource?: unknown;
  Principal?: unknown;
}

type Templates = Record<
  string,
  { Resources: Record<string, { Type: string; Properties?: Record<string, unknown> }> }
>;

function templates(synth: Synthesized): Templates {
  return Object.fromEntries(
    STACKS.map((name) => [
      name,
      JSON.parse(readFileSync(join(synth.outdir, `Streamheal-${name}.template.json`), 'utf8')),
    ]),
  );
}

/** Every identity-policy statement: inline role policies, policies, managed policies. */
function identityStatements(all: Templates): Array<{ where: string; statement: Statement }> {
  const found: Array<{ where: string; statement: Statement }> = [];
  for (const [stack, template] of Object.entries(all)) {
    for (const [id, resource] of Object.entries(template.Resources)) {
      const documents: unknown[] = [];
      if (resource.Type === 'AWS::IAM::Policy' || resource.Type === 'AWS::IAM::ManagedPolicy') {
        documents.push(resource.Properties?.PolicyDocument);
      }
      if (resource.Type === 'AWS::IAM::Role') {
        for (const policy of (resource.Properties?.Policies as Array<{
          PolicyDocument: unknown;
        }>) ?? []) {
          documents.push(policy.PolicyDocument);
        }
      }
      for (const document of documents) {
        for (const statement of (document as { Statement: Statement[] }).Statement) {
          found.push({ where: `${stack}/${id}`, statement });
        }
      }
    }
  }
  return found;
}

const list = <T>(value: T | T[] | undefined): T[] =>
  value === undefined ? [] : Array.isArray(value) ? value : [value];

describe.each(StoreKinds)('the app with store=%s', (store) => {
  let synth: Synthesized;
  let all: Templates;
  beforeAll(() => {
    synth = synthStreamheal(store, { nag: true, realImage: true });
    all = templates(synth);
  });

  it('synthesizes every stack', () => {
    const manifest = JSON.parse(readFileSync(join(synth.outdir, 'manifest.json'), 'utf8'));
    const stacks = Object.entries(manifest.artifacts as Record<string, { type: string }>)
      .filter(([, artifact]) => artifact.type === 'aws:cloudformation:stack')
      .map(([name]) => name);
    expect(stacks.sort()).toEqual(STACKS.map((name) => `Streamheal-${name}`).sort());
    for (const name of STACKS) expect(Object.keys(all[name]!.Resources).length).toBeGreaterThan(0);
  });

  it('leaves no cdk-nag AwsSolutions finding', () => {
    const report = JSON.parse(readFileSync(join(synth.outdir, 'validation-report.json'), 'utf8'));
    expect(report.pluginReports).toEqual([]);
  });

  it('gives every acknowledged finding a reason', () => {
    const reasons: Array<[string, string]> = [];
    const walk = (construct: IConstruct) => {
      for (const entry of construct.node.metadata) {
        if (entry.type !== Validations.ACKNOWLEDGED_RULES_METADATA_KEY) continue;
        for (const [id, reason] of Object.entries(entry.data as Record<string, unknown>)) {
          reasons.push([id, String(reason)]);
        }
      }
      for (const child of construct.node.children) walk(child);
    };
    walk(synth.app);
    const ours = reasons.filter(([id]) => id.includes('AwsSolutions-'));
    expect(ours.length).toBeGreaterThan(5);
    for (const [id, reason] of ours) {
      expect(reason.trim().length, id).toBeGreaterThanOrEqual(MIN_REASON_LENGTH);
    }
  });

  it('allows no wildcard action, and Resource "*" only for actions that cannot name a resource', () => {
    const statements = identityStatements(all).filter(
      ({ statement }) => statement.Effect === 'Allow',
    );
    expect(statements.length).toBeGreaterThan(10);
    for (const { where, statement } of statements) {
      for (const action of list(statement.Action)) {
        expect(action, where).not.toContain('*');
        if (list(statement.Resource).includes('*')) {
          expect(NO_RESOURCE_LEVEL.has(action), `${where}: ${action} on *`).toBe(true);
        }
      }
    }
  });

  it('keeps secrets out of templates and environment variables', () => {
    // One exception: the alert receivers secret starts as an empty list, which holds nothing.
    const control = synth.stacks.control;
    const receivers = control.alertReceivers;
    const receiversId = control.getLogicalId(receivers.node.defaultChild as never);
    for (const [stack, template] of Object.entries(all)) {
      for (const [id, resource] of Object.entries(template.Resources)) {
        if (stack === 'Control' && id === receiversId) {
          expect(resource.Properties?.SecretString, `${stack}/${id}`).toBe(INITIAL_ALERT_RECEIVERS);
          continue;
        }
        expect(resource.Properties?.SecretString, `${stack}/${id}`).toBeUndefined();
        const variables: Array<[string, unknown]> = [];
        if (resource.Type === 'AWS::Lambda::Function') {
          const env = resource.Properties?.Environment as
            { Variables?: Record<string, unknown> } | undefined;
          variables.push(...Object.entries(env?.Variables ?? {}));
        }
        if (resource.Type === 'AWS::ECS::TaskDefinition') {
          for (const container of resource.Properties?.ContainerDefinitions as Array<{
            Environment?: Array<{ Name: string; Value: unknown }>;
          }>) {
            variables.push(
              ...(container.Environment ?? []).map((e) => [e.Name, e.Value] as [string, unknown]),
            );
          }
        }
        for (const [name, value] of variables) {
          if (!/SECRET|PASSWORD|TOKEN|PUBLISH_KEY|PRIVATE/i.test(name)) continue;
          // Only references (an ARN from a Ref or GetAtt) may travel under such a name.
          expect(name, `${stack}/${id}`).toMatch(/_ARN$/);
          expect(typeof value, `${stack}/${id} ${name}`).toBe('object');
        }
      }
    }
  });

  it('hands the alert receivers to whoever delivers alerts, and only by reference', () => {
    const control = synth.stacks.control;
    const arn = control.resolve(control.alertReceivers.secretArn);
    const taskDefinitions = Object.values(all.Control!.Resources).filter(
      (r) => r.Type === 'AWS::ECS::TaskDefinition',
    );
    const injected = taskDefinitions.flatMap((td) =>
      (
        td.Properties?.ContainerDefinitions as Array<{
          Secrets?: Array<{ Name: string; ValueFrom: unknown }>;
        }>
      ).flatMap((c) => c.Secrets ?? []),
    );
    const receiversVariable = injected.filter((s) => s.Name === 'STREAMHEAL_ALERT_TARGETS');
    if (store === 'etcd') {
      // The orchestrator delivers alerts itself: ECS injects the list when a task starts.
      expect(receiversVariable).toEqual([{ Name: 'STREAMHEAL_ALERT_TARGETS', ValueFrom: arn }]);
    } else {
      // The alerts function reads the secret by ARN (ControlFunctions.test.ts); no task has it.
      expect(receiversVariable).toEqual([]);
      expect(control.functions!.alertReceivers.secret).toBe(control.alertReceivers);
    }
  });

  it('sets a retention on every log group', () => {
    for (const [stack, template] of Object.entries(all)) {
      for (const [id, resource] of Object.entries(template.Resources)) {
        if (resource.Type !== 'AWS::Logs::LogGroup') continue;
        expect(resource.Properties?.RetentionInDays, `${stack}/${id}`).toBeGreaterThan(0);
      }
    }
  });

  it('runs every Lambda on Node.js 22 or newer, on ARM64', () => {
    const functions = Object.values(all).flatMap((t) =>
      Object.values(t.Resources).filter((r) => r.Type === 'AWS::Lambda::Function'),
    );
    expect(functions.length).toBeGreaterThanOrEqual(store === 'dynamodb' ? 5 : 1);
    for (const fn of functions) {
      const version = Number(/^nodejs(\d+)\.x$/.exec(String(fn.Properties?.Runtime))?.[1]);
      expect(version).toBeGreaterThanOrEqual(22);
      expect(fn.Properties?.Architectures).toEqual(['arm64']);
    }
  });

  it('stages the gateway image from the Dockerfile with only what .dockerignore lets through', () => {
    const assets = JSON.parse(
      readFileSync(join(synth.outdir, 'Streamheal-Gateway.assets.json'), 'utf8'),
    );
    const images = Object.values(
      assets.dockerImages as Record<
        string,
        { source: { directory: string; dockerFile?: string; platform?: string } }
      >,
    );
    expect(images).toHaveLength(1);
    const [image] = images;
    expect(image!.source.platform).toBe('linux/arm64');
    const staged = join(synth.outdir, image!.source.directory);
    const top = readdirSync(staged).sort();
    expect(top).toEqual(
      expect.arrayContaining([
        'Dockerfile',
        'package.json',
        'package-lock.json',
        'binding.gyp',
        'shared',
        'workers',
      ]),
    );
    for (const unwanted of [
      'node_modules',
      'dist',
      'build',
      'cdk.out',
      '.git',
      'test',
      'docs',
      'infra',
    ]) {
      expect(existsSync(join(staged, unwanted)), unwanted).toBe(false);
    }
  });
});
