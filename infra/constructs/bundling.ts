/**
 * How every Lambda of the app is bundled: esbuild from node_modules (no Docker), one ES module
 * per function with its dependencies inside (the AWS SDK too: the store relies on SDK features
 * newer than the runtime's copy may be), source maps on, and the `.proto` files the gRPC client
 * loads at run time copied beside the bundle (shared/protocol/gatewayControl.ts resolves
 * `./control.proto` from its own module URL, which in a bundle is the bundle's).
 */
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import { REPO_ROOT, repoPath } from '../paths.js';

/** The Lambda runtime of every function (Node.js 24, the newest Lambda offers). */
export const LAMBDA_RUNTIME = lambda.Runtime.NODEJS_24_X;
/** esbuild's target for that runtime. */
export const ESBUILD_TARGET = 'node24';

/** `.proto` files under `folder` (repository-relative paths), for copying beside bundles. */
export function protoFiles(folder = 'shared'): string[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name.endsWith('.proto')) found.push(relative(REPO_ROOT, path));
    }
  };
  walk(repoPath(folder));
  return found.sort();
}

export interface BundlingChoices {
  /** Modules left out of the bundle (provided by the runtime). @default none */
  readonly externalModules?: string[];
}

export function functionBundling(choices: BundlingChoices = {}): nodejs.BundlingOptions {
  const protos = protoFiles();
  return {
    format: nodejs.OutputFormat.ESM,
    target: ESBUILD_TARGET,
    minify: true,
    sourceMap: true,
    sourcesContent: false,
    mainFields: ['module', 'main'],
    externalModules: choices.externalModules ?? [],
    // CommonJS dependencies (pino, ws) call require(); an ES module bundle has none of its own.
    banner:
      "import { createRequire as __streamhealCreateRequire } from 'node:module'; const require = __streamhealCreateRequire(import.meta.url);",
    commandHooks: {
      beforeBundling: () => [],
      beforeInstall: () => [],
      afterBundling: (inputDir: string, outputDir: string) =>
        protos.map((file) => `cp "${join(inputDir, file)}" "${outputDir}/"`),
    },
    // Never fall back to Docker: synth must work offline on machines without an engine.
    forceDockerBundling: false,
  };
}

/** Entry, project root and lock file of a function whose handler is at `entry` (repository-relative). */
export function functionSource(entry: string): {
  entry: string;
  projectRoot: string;
  depsLockFilePath: string;
} {
  return {
    entry: repoPath(entry),
    projectRoot: REPO_ROOT,
    depsLockFilePath: repoPath('package-lock.json'),
  };
}
