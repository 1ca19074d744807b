/**
 * The rotation handler through the four steps Secrets Manager drives, against an in-memory
 * secret with Secrets Manager's version-stage rules (AWSCURRENT, AWSPENDING, AWSPREVIOUS). No
 * Secrets Manager emulator runs on this machine; the stages are what the protocol is about.
 */
import {
  DescribeSecretCommand,
  GetSecretValueCommand,
  PutSecretValueCommand,
  UpdateSecretVersionStageCommand,
} from '@aws-sdk/client-secrets-manager';
import { describe, expect, it } from 'vitest';
import { parseServices, rotate, type RotationEvent } from '../../../infra/rotation/handler.js';
import { parseRing } from '../../../infra/rotation/keyRing.js';
import { keyRingFromSecret } from '../../../shared/tokens.js';

class StagedSecret {
  versions = new Map<string, { value: string; stages: Set<string> }>();
  constructor(initial: string) {
    this.versions.set('v0', { value: initial, stages: new Set(['AWSCURRENT']) });
  }
  private byStage(stage: string) {
    return [...this.versions.entries()].find(([, v]) => v.stages.has(stage));
  }
  async send(command: unknown): Promise<unknown> {
    if (command instanceof DescribeSecretCommand) {
      return {
        RotationEnabled: true,
        VersionIdsToStages: Object.fromEntries(
          [...this.versions.entries()].map(([id, v]) => [id, [...v.stages]]),
        ),
      };
    }
    if (command instanceof GetSecretValueCommand) {
      const { VersionId, VersionStage } = command.input;
      const found = VersionId
        ? this.versions.get(VersionId)
        : this.byStage(VersionStage ?? 'AWSCURRENT')?.[1];
      if (!found || (VersionStage && !found.stages.has(VersionStage))) {
        throw Object.assign(new Error('not found'), { name: 'ResourceNotFoundException' });
      }
      return { SecretString: found.value };
    }
    if (command instanceof PutSecretValueCommand) {
      const { ClientRequestToken, SecretString, VersionStages } = command.input;
      for (const stage of VersionStages ?? []) {
        for (const version of this.versions.values()) version.stages.delete(stage);
      }
      this.versions.set(ClientRequestToken!, {
        value: SecretString!,
        stages: new Set(VersionStages),
      });
      return {};
    }
    if (command instanceof UpdateSecretVersionStageCommand) {
      const { VersionStage, MoveToVersionId, RemoveFromVersionId } = command.input;
      if (VersionStage === 'AWSCURRENT' && RemoveFromVersionId) {
        const old = this.versions.get(RemoveFromVersionId)!;
        old.stages.delete('AWSCURRENT');
        for (const version of this.versions.values()) version.stages.delete('AWSPREVIOUS');
        old.stages.add('AWSPREVIOUS');
      }
      const target = this.versions.get(MoveToVersionId!)!;
      target.stages.add(VersionStage!);
      target.stages.delete('AWSPENDING');
      return {};
    }
    throw new Error(`unexpected command ${String(command)}`);
  }
  current(): string {
    return this.byStage('AWSCURRENT')![1].value;
  }
}

const bare = 'Gq7mZ2xVb9nK4pL1sT8wR3yH6jD0fC5a';

async function runRotation(secret: StagedSecret, token: string, rolled: string[], now: Date) {
  const deps = {
    secrets: secret,
    roller: {
      roll: async (cluster: string, service: string) => void rolled.push(`${cluster}/${service}`),
    },
    services: parseServices('cluster-a/gw,cluster-a/orch'),
    now: () => now,
  };
  const event = (Step: RotationEvent['Step']): RotationEvent => ({
    Step,
    SecretId: 's',
    ClientRequestToken: token,
  });
  // RotateSecret lists the new version id as pending before createSecret stores its value.
  await rotate(event('createSecret'), { ...deps, secrets: pendingAware(secret, token) });
  await rotate(event('createSecret'), deps); // a retried step changes nothing
  await rotate(event('setSecret'), deps);
  await rotate(event('testSecret'), deps);
  await rotate(event('finishSecret'), deps);
}

/** Before createSecret has stored a value, Secrets Manager already lists the token as pending. */
function pendingAware(secret: StagedSecret, token: string) {
  return {
    async send(command: unknown) {
      if (command instanceof DescribeSecretCommand) {
        const out = (await secret.send(command)) as {
          VersionIdsToStages: Record<string, string[]>;
        };
        out.VersionIdsToStages[token] ??= ['AWSPENDING'];
        return out;
      }
      return secret.send(command);
    },
  };
}

describe('key ring rotation handler', () => {
  it('rotates through the four steps: staged key first, then promoted; services rolled after each', async () => {
    const secret = new StagedSecret(bare);
    const rolled: string[] = [];
    await runRotation(secret, 't1', rolled, new Date('2026-02-01T00:00:00Z'));
    const once = parseRing(secret.current());
    expect(once.map((k) => k.kid)).toEqual([keyRingFromSecret(bare).current, 'k20260201000000']);
    expect(rolled).toEqual(['cluster-a/gw', 'cluster-a/orch']);
    expect(secret.versions.get('v0')!.stages).toEqual(new Set(['AWSPREVIOUS']));

    await runRotation(secret, 't2', rolled, new Date('2026-03-03T00:00:00Z'));
    const twice = parseRing(secret.current());
    expect(twice.map((k) => k.kid)).toEqual([
      'k20260201000000',
      'k20260303000000',
      keyRingFromSecret(bare).current,
    ]);
    expect(rolled).toHaveLength(4);
    // The ring is one shared/tokens.ts reads.
    expect(keyRingFromSecret(secret.current()).current).toBe('k20260201000000');
  });

  it('refuses a version that is not pending, and a pending ring that would not sign with the staged key', async () => {
    const secret = new StagedSecret(bare);
    const deps = { secrets: secret, roller: undefined, services: [], now: () => new Date() };
    await expect(
      rotate({ Step: 'createSecret', SecretId: 's', ClientRequestToken: 'nope' }, deps),
    ).rejects.toThrow(/not a version/);
    secret.versions.set('bad', {
      value: 'other:0123456789abcdef0123',
      stages: new Set(['AWSPENDING']),
    });
    await expect(
      rotate({ Step: 'testSecret', SecretId: 's', ClientRequestToken: 'bad' }, deps),
    ).rejects.toThrow(/staged key/);
  });

  it('reads the services to roll as cluster/service pairs', () => {
    expect(parseServices(undefined)).toEqual([]);
    expect(parseServices('')).toEqual([]);
    expect(parseServices('c/s1, c/s2')).toEqual([
      { cluster: 'c', service: 's1' },
      { cluster: 'c', service: 's2' },
    ]);
    expect(() => parseServices('c-s1')).toThrow(/cluster\/service/);
  });
});
