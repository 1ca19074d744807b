/**
 * Synthesizing the CDK app in tests: offline, without credentials, without Docker. Lambda
 * bundling is skipped unless a test asks for it (context `aws:cdk:bundling-stacks`), the
 * gateway image is a registry reference instead of a Docker build, and handlers default to a
 * stand-in (tests that look inside the real bundles use the real entries).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Stack } from 'aws-cdk-lib';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import { afterAll } from 'vitest';
import { ControlFunctionNames, type StoreKind } from '../../../infra/defaults.js';
import { applyNagChecks } from '../../../infra/nag.js';
import {
  buildStreamheal,
  type StreamhealAppProps,
  type StreamhealStacks,
} from '../../../infra/streamhealApp.js';

export const STAND_IN_HANDLER = 'test/infra/fixtures/handler.ts';

/**
 * Every synth of a test file writes under one temporary folder, removed after the file's tests
 * (this module is imported while the file is collected, so the hook belongs to that file).
 */
let outputRoot: string | undefined;
afterAll(() => {
  if (outputRoot) rmSync(outputRoot, { recursive: true, force: true });
  outputRoot = undefined;
});
function outputFolder(name: string): string {
  outputRoot ??= mkdtempSync(join(tmpdir(), 'streamheal-cdk-'));
  return mkdtempSync(join(outputRoot, `${name}-`));
}

export interface SynthOptions {
  /** Run esbuild for the Lambdas (slow: do it once per file at most). @default false */
  bundle?: boolean;
  /** Use the real functions/<name>/handler.ts entries. @default false (the stand-in) */
  realHandlers?: boolean;
  /** Run cdk-nag. @default false */
  nag?: boolean;
  /** Build the gateway image asset from the Dockerfile (staged only; no Docker). @default false */
  realImage?: boolean;
  props?: StreamhealAppProps;
}

export interface Synthesized {
  app: App;
  stacks: StreamhealStacks;
  outdir: string;
  template(stack: Stack): Template;
}

export function synthStreamheal(store: StoreKind, options: SynthOptions = {}): Synthesized {
  const outdir = outputFolder(store);
  const app = new App({
    outdir,
    context: options.bundle ? {} : { 'aws:cdk:bundling-stacks': [] },
  });
  const props = options.props ?? {};
  const functions = options.realHandlers
    ? props.functions
    : Object.fromEntries(
        ControlFunctionNames.map((name) => [
          name,
          { ...props.functions?.[name], entry: STAND_IN_HANDLER },
        ]),
      );
  const stacks = buildStreamheal(app, {
    ...(options.realImage
      ? {}
      : { image: ecs.ContainerImage.fromRegistry('example.invalid/streamheal-gateway:test') }),
    ...props,
    store,
    ...(functions ? { functions } : {}),
  });
  if (options.nag) applyNagChecks(app);
  app.synth();
  const templates = new Map<Stack, Template>();
  return {
    app,
    stacks,
    outdir,
    template(stack) {
      let template = templates.get(stack);
      if (!template) {
        template = Template.fromStack(stack);
        templates.set(stack, template);
      }
      return template;
    },
  };
}

/** Resources of one type in a template, as [logicalId, resource] pairs. */
export function resourcesOf(
  template: Template,
  type: string,
): Array<[string, { Properties?: Record<string, unknown>; [key: string]: unknown }]> {
  return Object.entries(template.findResources(type)) as Array<
    [string, { Properties?: Record<string, unknown> }]
  >;
}
