/**
 * `cdk synth` as CI and operators run it: the CDK CLI with cdk.json's app command, offline,
 * without AWS credentials or configuration (a fresh HOME, no AWS_* variables, instance metadata
 * off), for both store options. cdk-nag runs inside the app, so a finding fails the synth.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../infra/paths.js';

const scratch = mkdtempSync(join(tmpdir(), 'streamheal-cdk-cli-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function offlineEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith('AWS_') || key.startsWith('CDK_')) continue;
    env[key] = value;
  }
  return {
    ...env,
    HOME: mkdtempSync(join(scratch, 'home-')),
    AWS_EC2_METADATA_DISABLED: 'true',
    CDK_DISABLE_CLI_TELEMETRY: 'true',
    CI: 'true',
  };
}

function cdk(args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(join(REPO_ROOT, 'node_modules/.bin/cdk'), args, {
      cwd: REPO_ROOT,
      env: offlineEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, output }));
  });
}

function stacksIn(outdir: string): string[] {
  const manifest = JSON.parse(readFileSync(join(outdir, 'manifest.json'), 'utf8'));
  return Object.entries(manifest.artifacts as Record<string, { type: string }>)
    .filter(([, artifact]) => artifact.type === 'aws:cloudformation:stack')
    .map(([name]) => name)
    .sort();
}

const STACKS = ['Alerting', 'Control', 'Gateway', 'Network', 'Observability', 'State'].map(
  (name) => `Streamheal-${name}`,
);

describe('cdk synth (CLI, offline, no credentials)', () => {
  it('synthesizes every stack with store=dynamodb through cdk.json (build, then the compiled app)', async () => {
    const outdir = join(scratch, 'dynamodb');
    const { code, output } = await cdk(['synth', '--all', '--quiet', '--no-notices', '-o', outdir]);
    expect(code, output).toBe(0);
    expect(stacksIn(outdir)).toEqual(STACKS);
    const control = readFileSync(join(outdir, 'Streamheal-Control.template.json'), 'utf8');
    expect(control).toContain('nodejs24.x');
    expect(control).toContain('ECS Task State Change');
  }, 300_000);

  it('synthesizes every stack with -c store=etcd', async () => {
    const outdir = join(scratch, 'etcd');
    // dist/ is fresh from the previous synth's build; run the compiled app directly.
    const { code, output } = await cdk([
      'synth',
      '--all',
      '--quiet',
      '--no-notices',
      '--app',
      'node dist/infra/app.js',
      '-c',
      'store=etcd',
      '-o',
      outdir,
    ]);
    expect(code, output).toBe(0);
    expect(stacksIn(outdir)).toEqual(STACKS);
    const state = readFileSync(join(outdir, 'Streamheal-State.template.json'), 'utf8');
    expect(state).toContain('AWS::AutoScaling::AutoScalingGroup');
    expect(state).not.toContain('AWS::DynamoDB::Table');
  }, 300_000);
});
