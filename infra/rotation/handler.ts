/**
 * Secrets Manager rotation of the token key ring (keyRing.ts has the scheme). The four steps
 * of the rotation protocol:
 *
 * - createSecret: the pending version is the current ring rotated once (idempotent: a pending
 *   version for this token is kept);
 * - setSecret: nothing to do, no other system holds the keys;
 * - testSecret: the pending value parses as a ring shared/tokens.ts accepts, and keeps the
 *   current ring's staged key as its signing key;
 * - finishSecret: the pending version becomes current; then, when told to, every listed ECS
 *   service rolls (a new deployment), so each task reads the new ring at start. Gateways drain
 *   make-before-break on SIGTERM, so clients see their sessions move, not break.
 */
import { createRequire } from 'node:module';
import {
  DescribeSecretCommand,
  GetSecretValueCommand,
  PutSecretValueCommand,
  SecretsManagerClient,
  UpdateSecretVersionStageCommand,
} from '@aws-sdk/client-secrets-manager';
import { formatRing, newKey, parseRing, rotateRing } from './keyRing.js';

export interface RotationEvent {
  Step: 'createSecret' | 'setSecret' | 'testSecret' | 'finishSecret';
  SecretId: string;
  ClientRequestToken: string;
}

/** The few ECS calls finishSecret makes, so the handler needs no ECS SDK bundled. */
export interface ServiceRoller {
  roll(cluster: string, service: string): Promise<void>;
}

export interface RotationDeps {
  secrets: Pick<SecretsManagerClient, 'send'>;
  roller: ServiceRoller | undefined;
  /** `cluster/service` pairs to roll after a rotation. */
  services: Array<{ cluster: string; service: string }>;
  now: () => Date;
}

export async function rotate(event: RotationEvent, deps: RotationDeps): Promise<void> {
  const { SecretId: secretId, ClientRequestToken: token } = event;
  const described = await deps.secrets.send(new DescribeSecretCommand({ SecretId: secretId }));
  if (described.RotationEnabled === false) throw new Error(`rotation is off for ${secretId}`);
  const stages = described.VersionIdsToStages?.[token];
  if (!stages) throw new Error(`version ${token} is not a version of ${secretId}`);
  if (stages.includes('AWSCURRENT') && event.Step !== 'finishSecret') return;
  if (!stages.includes('AWSPENDING') && !stages.includes('AWSCURRENT')) {
    throw new Error(`version ${token} of ${secretId} is not pending`);
  }
  switch (event.Step) {
    case 'createSecret':
      return createSecret(secretId, token, deps);
    case 'setSecret':
      return;
    case 'testSecret':
      return testSecret(secretId, token, deps);
    case 'finishSecret':
      return finishSecret(secretId, token, described.VersionIdsToStages ?? {}, deps);
  }
}

async function value(
  deps: RotationDeps,
  secretId: string,
  stage: { VersionStage: string } | { VersionId: string; VersionStage: string },
): Promise<string | undefined> {
  try {
    const out = await deps.secrets.send(
      new GetSecretValueCommand({ SecretId: secretId, ...stage }),
    );
    return out.SecretString;
  } catch (error) {
    if ((error as { name?: string }).name === 'ResourceNotFoundException') return undefined;
    throw error;
  }
}

async function createSecret(secretId: string, token: string, deps: RotationDeps): Promise<void> {
  const pending = await value(deps, secretId, { VersionId: token, VersionStage: 'AWSPENDING' });
  if (pending !== undefined) return;
  const current = await value(deps, secretId, { VersionStage: 'AWSCURRENT' });
  if (current === undefined) throw new Error(`${secretId} has no current value`);
  const rotated = rotateRing(parseRing(current), newKey(deps.now()));
  await deps.secrets.send(
    new PutSecretValueCommand({
      SecretId: secretId,
      ClientRequestToken: token,
      SecretString: formatRing(rotated),
      VersionStages: ['AWSPENDING'],
    }),
  );
}

async function testSecret(secretId: string, token: string, deps: RotationDeps): Promise<void> {
  const pending = await value(deps, secretId, { VersionId: token, VersionStage: 'AWSPENDING' });
  const current = await value(deps, secretId, { VersionStage: 'AWSCURRENT' });
  if (pending === undefined || current === undefined) {
    throw new Error(`${secretId}: pending or current value missing`);
  }
  const next = parseRing(pending);
  const now = parseRing(current);
  const expectedSigner = now[1] ?? now[0];
  if (next[0]?.kid !== expectedSigner?.kid) {
    throw new Error(`${secretId}: pending ring does not sign with the staged key`);
  }
}

async function finishSecret(
  secretId: string,
  token: string,
  versions: Record<string, string[]>,
  deps: RotationDeps,
): Promise<void> {
  const currentVersion = Object.entries(versions).find(([, stages]) =>
    stages.includes('AWSCURRENT'),
  )?.[0];
  if (currentVersion !== token) {
    await deps.secrets.send(
      new UpdateSecretVersionStageCommand({
        SecretId: secretId,
        VersionStage: 'AWSCURRENT',
        MoveToVersionId: token,
        ...(currentVersion === undefined ? {} : { RemoveFromVersionId: currentVersion }),
      }),
    );
  }
  if (!deps.roller) return;
  for (const { cluster, service } of deps.services) await deps.roller.roll(cluster, service);
}

/** `cluster/service,cluster/service` (STREAMHEAL_ROLL_SERVICES). */
export function parseServices(
  spec: string | undefined,
): Array<{ cluster: string; service: string }> {
  if (spec === undefined || spec.trim() === '') return [];
  return spec.split(',').map((pair) => {
    const [cluster, service, extra] = pair.trim().split('/');
    if (!cluster || !service || extra !== undefined) {
      throw new Error(`STREAMHEAL_ROLL_SERVICES: "${pair}" is not cluster/service`);
    }
    return { cluster, service };
  });
}

/** The part of @aws-sdk/client-ecs the roller uses. */
interface EcsModule {
  ECSClient: new (config: object) => { send(command: unknown): Promise<unknown> };
  UpdateServiceCommand: new (input: {
    cluster: string;
    service: string;
    forceNewDeployment: boolean;
  }) => unknown;
}

/**
 * Rolls a service with ECS UpdateService (forceNewDeployment). The ECS client is the one the
 * Lambda Node.js runtime ships (on NODE_PATH, hence `require`): the repository does not depend
 * on @aws-sdk/client-ecs for this one call, and the bundle leaves it external.
 */
function ecsRoller(): ServiceRoller {
  const { ECSClient, UpdateServiceCommand } = createRequire(import.meta.url)(
    '@aws-sdk/client-ecs',
  ) as EcsModule;
  const ecs = new ECSClient({});
  return {
    async roll(cluster, service) {
      await ecs.send(new UpdateServiceCommand({ cluster, service, forceNewDeployment: true }));
    },
  };
}

const secrets = new SecretsManagerClient({});

export async function handler(event: RotationEvent): Promise<void> {
  const services = parseServices(process.env.STREAMHEAL_ROLL_SERVICES);
  await rotate(event, {
    secrets,
    roller: services.length > 0 ? ecsRoller() : undefined,
    services,
    now: () => new Date(),
  });
}
