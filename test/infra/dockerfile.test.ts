/**
 * The Dockerfile without a Docker engine: its stages are read from the file and replayed in
 * temporary folders, so a change to the Dockerfile changes what is tested.
 *
 * - build: COPY instructions copy from the repository (through .dockerignore), RUN instructions
 *   run as written, except two that need the network or root: `apt-get` (checked instead: the
 *   compilers it installs must be on this machine) and `npm ci` (stood in for by the repository's
 *   own node_modules, installed by `npm ci` from the same lock file). So the native addon build,
 *   the TypeScript build of only the copied sources, and the .proto copy run for real.
 * - deps: `npm ci --omit=dev` is reproduced from the lock file (its non-dev packages, copied from
 *   node_modules), and `npm ls --omit=dev --all` confirms the tree is complete.
 * - runtime: assembled from the COPY --from instructions; its command starts a gateway that
 *   answers, loads the kernel probe addon from that layout, and stops cleanly on SIGTERM; the
 *   orchestrator command (what the etcd option runs on the same image) starts against a real
 *   etcd and stops cleanly too.
 *
 * The base image (Node 24) is not used: the command runs on this machine's Node.
 */
import { spawn, spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ORCHESTRATOR_COMMAND } from '../../infra/constructs/OrchestratorService.js';
import { REPO_ROOT } from '../../infra/paths.js';
import { EtcdCluster } from '../support/etcd.js';
import { killPids } from '../support/processes.js';

interface Instruction {
  op: string;
  args: string;
}
interface Stage {
  name: string;
  from: string;
  instructions: Instruction[];
}

/** Instructions and stages of a Dockerfile (line continuations joined, comments dropped). */
function parseDockerfile(text: string): { args: Record<string, string>; stages: Stage[] } {
  const lines = text.replace(/\\\n/g, ' ').split('\n');
  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const raw of lines) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const [, op = '', rest = ''] = /^(\w+)\s+(.*)$/.exec(line) ?? [];
    const upper = op.toUpperCase();
    if (upper === 'FROM') {
      const [, image = '', name = ''] = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest) ?? [];
      const from = image.replace(/\$\{(\w+)\}/g, (_, key: string) => args[key] ?? '');
      stages.push({ name, from, instructions: [] });
    } else if (upper === 'ARG' && stages.length === 0) {
      const [key = '', value = ''] = rest.split('=');
      args[key] = value;
    } else {
      stages.at(-1)?.instructions.push({ op: upper, args: rest.replace(/\s+/g, ' ').trim() });
    }
  }
  return { args, stages };
}

/** .dockerignore as Docker reads it: in order, the last matching pattern decides, `!` re-includes. */
function dockerIgnore(text: string): (path: string) => boolean {
  const rules = text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const negate = line.startsWith('!');
      const glob = negate ? line.slice(1) : line;
      const source = glob
        .split('/')
        .map((part) =>
          part === '**'
            ? '.*'
            : part
                .replace(/[.+^${}()|[\]\\]/g, '\\$&')
                .replace(/\*/g, '[^/]*')
                .replace(/\?/g, '[^/]'),
        )
        .join('/');
      return { negate, pattern: new RegExp(`^${source}$`) };
    });
  return (path) => {
    let ignored = false;
    for (const rule of rules) if (rule.pattern.test(path)) ignored = !rule.negate;
    return ignored;
  };
}

function env(instructions: Instruction[]): Record<string, string> {
  const found: Record<string, string> = {};
  for (const { op, args } of instructions) {
    if (op !== 'ENV') continue;
    for (const [, key = '', value = ''] of args.matchAll(/(\w+)=(\S+)/g)) found[key] = value;
  }
  return found;
}

/** `COPY [--from=x] src... dest` with sources relative to the stage's /app. */
function copyArgs(args: string): { from?: string; sources: string[]; dest: string } {
  const words = args.split(' ');
  const from = words[0]?.startsWith('--from=') ? words.shift()!.slice('--from='.length) : undefined;
  const dest = words.pop()!;
  return { ...(from === undefined ? {} : { from }), sources: words, dest };
}

function copyInto(
  sourceRoot: string,
  source: string,
  stageRoot: string,
  dest: string,
  keep: (path: string) => boolean,
) {
  const relativeSource = source.replace(/^\/app\//, '');
  const from = join(sourceRoot, relativeSource);
  const multiple = dest.endsWith('/');
  const to = join(stageRoot, multiple ? join(dest, relativeSource.split('/').pop()!) : dest);
  if (!existsSync(from)) throw new Error(`COPY ${source}: not found in ${sourceRoot}`);
  if (statSync(from).isDirectory()) {
    cpSync(from, to, {
      recursive: true,
      filter: (path) => keep(relative(sourceRoot, path) || '.'),
    });
  } else {
    mkdirSync(dirname(to), { recursive: true });
    cpSync(from, to);
  }
}

/**
 * What `npm ci --omit=dev` installs: the lock file's packages not marked dev. Packages bundled
 * inside another (`inBundle`) come with their owner, so they count only if the owner does.
 */
function productionPackages(): string[] {
  const lock = JSON.parse(readFileSync(join(REPO_ROOT, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { dev?: boolean; devOptional?: boolean; inBundle?: boolean }>;
  };
  const production = (path: string): boolean => {
    const info = lock.packages[path];
    if (!info || info.dev || info.devOptional) return false;
    if (!info.inBundle) return true;
    return production(path.slice(0, path.lastIndexOf('/node_modules/')));
  };
  return Object.keys(lock.packages).filter((path) => path !== '' && production(path));
}

function run(command: string, cwd: string, extraEnv: Record<string, string>) {
  const result = spawnSync('sh', ['-c', command], {
    cwd,
    env: { ...process.env, ...extraEnv },
    encoding: 'utf8',
    timeout: 240_000,
  });
  return { code: result.status, output: `${result.stdout}${result.stderr}` };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

const dockerfile = parseDockerfile(readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8'));
const ignored = dockerIgnore(readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8'));
const stage = (name: string) => {
  const found = dockerfile.stages.find((s) => s.name === name);
  if (!found) throw new Error(`Dockerfile has no stage ${name}`);
  return found;
};

describe('Dockerfile', () => {
  it('has three stages on Node.js 22 or newer, and a runtime that is not root', () => {
    expect(dockerfile.stages.map((s) => s.name)).toEqual(['build', 'deps', 'runtime']);
    for (const { from } of dockerfile.stages) {
      const major = Number(/^node:(\d+)/.exec(from)?.[1]);
      expect(major, from).toBeGreaterThanOrEqual(22);
    }
    const runtime = stage('runtime').instructions;
    const users = runtime.filter((i) => i.op === 'USER').map((i) => i.args);
    expect(users.at(-1)).toBeDefined();
    expect(['root', '0', '0:0']).not.toContain(users.at(-1));
    expect(runtime.filter((i) => i.op === 'RUN')).toEqual([]);
    expect(runtime.find((i) => i.op === 'CMD')?.args).toBe(
      '["node", "dist/workers/gateway/main.js"]',
    );
    // Compilers only where the addon is built.
    expect(JSON.stringify(stage('runtime'))).not.toMatch(/g\+\+|apt-get/);
    expect(JSON.stringify(stage('build'))).toMatch(/g\+\+/);
  });

  it('sends only what the build copies as context', () => {
    for (const path of [
      'package.json',
      'package-lock.json',
      'binding.gyp',
      'shared/protocol/control.proto',
      'workers/gateway/main.ts',
    ]) {
      expect(ignored(path), path).toBe(false);
    }
    for (const path of [
      'node_modules/ws/index.js',
      'dist/workers/gateway/main.js',
      'build/Release/x.node',
      '.git/HEAD',
      'cdk.out/manifest.json',
      'test/infra/cdk.test.ts',
      'infra/app.ts',
      'docs/deploy.md',
    ]) {
      expect(ignored(path), path).toBe(true);
    }
  });

  describe('replayed without Docker', () => {
    let root: string;
    let build: string;
    let deps: string;
    let runtime: string;
    const pids: number[] = [];
    const log: string[] = [];

    beforeAll(() => {
      root = mkdtempSync(join(tmpdir(), 'streamheal-image-'));
      build = join(root, 'build');
      deps = join(root, 'deps');
      runtime = join(root, 'runtime');
      for (const dir of [build, deps, runtime]) mkdirSync(dir);

      // build stage
      const buildEnv = env(stage('build').instructions);
      // The image's Node headers live under /usr/local; here npm's own nodedir setting applies.
      delete buildEnv.npm_config_nodedir;
      for (const { op, args } of stage('build').instructions) {
        if (op === 'COPY') {
          const { sources, dest } = copyArgs(args);
          for (const source of sources)
            copyInto(REPO_ROOT, source, build, dest, (path) => !ignored(path));
        } else if (op === 'RUN' && args.startsWith('apt-get')) {
          for (const tool of ['g++', 'make', 'python3']) {
            expect(spawnSync('sh', ['-c', `command -v ${tool}`]).status, tool).toBe(0);
          }
        } else if (op === 'RUN' && /^npm ci\b/.test(args)) {
          symlinkSync(join(REPO_ROOT, 'node_modules'), join(build, 'node_modules'), 'dir');
        } else if (op === 'RUN') {
          const result = run(args, build, buildEnv);
          log.push(`RUN ${args}\n${result.output}`);
          if (result.code !== 0)
            throw new Error(`build stage failed: RUN ${args}\n${result.output}`);
        }
      }

      // deps stage
      for (const { op, args } of stage('deps').instructions) {
        if (op === 'COPY') {
          const { sources, dest } = copyArgs(args);
          for (const source of sources)
            copyInto(REPO_ROOT, source, deps, dest, (path) => !ignored(path));
        } else if (op === 'RUN') {
          expect(args).toMatch(/^npm ci --omit=dev --ignore-scripts\b/);
          for (const path of productionPackages()) {
            const from = join(REPO_ROOT, path);
            // Nested node_modules are separate lock entries; copy each package without them.
            cpSync(from, join(deps, path), {
              recursive: true,
              filter: (source) =>
                source === from || !relative(from, source).startsWith('node_modules'),
            });
          }
        }
      }

      // runtime stage
      for (const { op, args } of stage('runtime').instructions) {
        if (op !== 'COPY') continue;
        const { from, sources, dest } = copyArgs(args);
        const sourceRoot = from === 'build' ? build : from === 'deps' ? deps : REPO_ROOT;
        for (const source of sources) copyInto(sourceRoot, source, runtime, dest, () => true);
      }
    }, 300_000);

    afterAll(() => {
      killPids(pids);
      if (root) rmSync(root, { recursive: true, force: true });
    });

    it('builds the kernel probe addon and checks it loads', () => {
      expect(log.some((entry) => entry.startsWith('RUN npm run install'))).toBe(true);
      expect(existsSync(join(build, 'build/Release/streamheal_probes.node'))).toBe(true);
      expect(existsSync(join(runtime, 'build/Release/streamheal_probes.node'))).toBe(true);
    });

    it('compiles the copied sources alone, and ships the .proto files beside the compiled code', () => {
      expect(existsSync(join(build, 'dist/workers/gateway/main.js'))).toBe(true);
      expect(existsSync(join(runtime, 'dist/shared/protocol/control.proto'))).toBe(true);
      expect(existsSync(join(runtime, 'dist/functions'))).toBe(true);
      // Neither tests nor the CDK app are part of the image.
      expect(existsSync(join(build, 'dist/test'))).toBe(false);
      expect(existsSync(join(build, 'dist/infra'))).toBe(false);
    });

    it('installs production dependencies only, and a complete tree of them', () => {
      const modules = readdirSync(join(runtime, 'node_modules'));
      for (const dev of [
        'typescript',
        'vitest',
        'aws-cdk-lib',
        'aws-cdk',
        'esbuild',
        'dynalite',
        'cdk-nag',
      ]) {
        expect(modules, dev).not.toContain(dev);
      }
      for (const needed of ['ws', 'pino', '@grpc', '@aws-sdk'])
        expect(modules, needed).toContain(needed);
      const ls = spawnSync('npm', ['ls', '--omit=dev', '--all'], {
        cwd: runtime,
        encoding: 'utf8',
      });
      expect(ls.status, `${ls.stdout}${ls.stderr}`).toBe(0);
    });

    /** Starts `args` with this Node in the runtime layout; resolves once `ready` is printed. */
    async function startFromImage(args: string[], variables: NodeJS.ProcessEnv, ready: string) {
      const child = spawn(process.execPath, args, {
        cwd: runtime,
        env: { PATH: process.env.PATH, ...env(stage('runtime').instructions), ...variables },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      pids.push(child.pid!);
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const exited = new Promise<number | null>((resolve) =>
        child.once('exit', (code) => resolve(code)),
      );
      const deadline = Date.now() + 20_000;
      while (!output.includes(ready)) {
        if (child.exitCode !== null) throw new Error(`${args.join(' ')} exited: ${output}`);
        if (Date.now() > deadline) throw new Error(`${args.join(' ')} did not start: ${output}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      return { child, exited, output: () => output };
    }

    it('starts a gateway with the image command, from that layout alone, and stops it on SIGTERM', async () => {
      const [program, ...args] = JSON.parse(
        stage('runtime').instructions.find((i) => i.op === 'CMD')!.args,
      ) as string[];
      expect(program).toBe('node');
      const port = await freePort();
      const { child, exited, output } = await startFromImage(
        args,
        {
          // Loopback and a free port here; in the task it listens on 0.0.0.0:8080.
          STREAMHEAL_HOST: '127.0.0.1',
          STREAMHEAL_PORT: String(port),
          STREAMHEAL_STORE: 'memory',
          STREAMHEAL_NODE_ID: 'image-test',
          STREAMHEAL_CLUSTER_SECRET: 'image-test-secret-0123456789',
          STREAMHEAL_PUBLISH_KEY: 'image-test-publish-key',
          STREAMHEAL_CANARY_INTERVAL_MS: '0',
        },
        'gateway listening',
      );
      const base = `http://127.0.0.1:${port}`;
      const health = await fetch(`${base}/healthz`);
      expect(health.status).toBe(200);
      expect(await health.json()).toMatchObject({ status: 'ok', node: 'image-test' });
      const metrics = await (await fetch(`${base}/metrics`)).text();
      expect(metrics).toMatch(/^streamheal_kernel_probes_available\{[^}]*\} 1$/m);
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(output()).not.toMatch(/Cannot find (module|package)/);
    });

    it('runs the orchestrator command (store=etcd) from the same layout against a real etcd', async () => {
      const [program, ...args] = ORCHESTRATOR_COMMAND;
      expect(program).toBe('node');
      const etcd = await EtcdCluster.start({ size: 1 });
      try {
        const port = await freePort();
        const { child, exited, output } = await startFromImage(
          args,
          {
            STREAMHEAL_STORE: 'etcd',
            STREAMHEAL_ETCD_ENDPOINTS: etcd.endpoints.join(','),
            STREAMHEAL_ETCD_PREFIX: `image-test-${process.pid}/`,
            STREAMHEAL_HOST: '127.0.0.1',
            STREAMHEAL_PORT: String(port),
          },
          'campaigning',
        );
        const health = await fetch(`http://127.0.0.1:${port}/healthz`);
        expect(health.status).toBe(200);
        child.kill('SIGTERM');
        expect(await exited).toBe(0);
        expect(output()).not.toMatch(/Cannot find (module|package)/);
      } finally {
        await etcd.stop();
      }
    });
  });
});
