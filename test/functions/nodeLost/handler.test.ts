/**
 * nodeLost as a Lambda on DynamoDB and EventBridge: the ECS Developer Guide's task event,
 * delivered twice and with an older version, marks the task's sessions for resume once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DecisionEvents } from '../../../shared/bus/controlEvents.js';
import { API_V2, RecordRepository } from '../../../shared/records/index.js';
import { handler } from '../../../functions/nodeLost/handler.js';
import { closeLambdaDeps } from '../../../functions/runtime.js';
import { ecsTaskStopped } from '../../shared/bus/catalogueExamples.js';
import { register } from '../../shared/control/helpers.js';
import { startLambdaEnv, type LambdaEnv } from '../lambdaEnv.js';

describe('nodeLost: Lambda handler for ECS Task State Change', () => {
  let env: LambdaEnv;
  const taskArn = ecsTaskStopped.detail.taskArn;
  beforeAll(async () => {
    env = await startLambdaEnv();
    // The gateway of that task registered with its task ARN.
    await register(env.store, 'gateway-7', 2, { taskArn, pid: 1 });
    await register(env.store, 'gateway-8', 0, { pid: 1 });
    const repo = new RecordRepository(env.store);
    for (const [name, node] of [
      ['s1', 'gateway-7'],
      ['s2', 'gateway-7'],
      ['s3', 'gateway-8'],
    ]) {
      await repo.putSession({
        apiVersion: API_V2,
        kind: 'StreamSession',
        metadata: { name },
        spec: { sessionId: name, clusterId: 'aws', nodeId: node },
        status: { phase: 'Active' },
      });
    }
  }, 30_000);
  afterAll(async () => {
    await closeLambdaDeps();
    await env.restore();
  });

  it('marks the sessions Failed once, for duplicates and older versions of the task event', async () => {
    const first = await handler(ecsTaskStopped);
    // At-least-once: the same event again (same EventBridge id), then another copy with the
    // same version and one with an older version under new ids.
    const same = await handler(ecsTaskStopped);
    const again = await handler({ ...ecsTaskStopped, id: 'd6b6a1b0-0000-4000-8000-000000000001' });
    const older = await handler({
      ...ecsTaskStopped,
      id: 'd6b6a1b0-0000-4000-8000-000000000002',
      detail: { ...ecsTaskStopped.detail, version: 4 },
    });

    expect(first).toMatchObject({
      outcome: 'applied',
      node: 'gateway-7',
      decisions: [{ kind: 'lost' }],
    });
    expect(same.outcome).toBe('duplicate');
    expect(again.outcome).toBe('duplicate');
    expect(older).toMatchObject({ outcome: 'duplicate', why: 'ECS version 4 ≤ 5 already handled' });
    const sessions = await new RecordRepository(env.store).listSessions();
    expect(
      Object.fromEntries(sessions.map((s) => [s.record.metadata.name, s.record.status])),
    ).toEqual({
      s1: expect.objectContaining({
        phase: 'Failed',
        message: expect.stringContaining('gateway-7 lost'),
      }),
      s2: expect.objectContaining({ phase: 'Failed' }),
      s3: expect.objectContaining({ phase: 'Active' }),
    });
    const published = env.eventBridge.events();
    expect(published.map((e) => e['detail-type'])).toEqual([DecisionEvents.nodeDeclaredLost]);
    expect(published[0]!.detail).toMatchObject({
      node: 'gateway-7',
      cause: 'ecs_task_stopped',
      sessions: 2,
      incarnation: `task:${taskArn}`,
      message:
        'gateway-7 lost (task stopped: Essential container in task exited, EssentialContainerExited); 2 sessions marked for resume elsewhere',
    });
  });
});
