import { describe, expect, it } from 'vitest';
import { fromEventBridgeEvent } from '../../../shared/bus/eventBridgeEntry.js';
import type { ClusterView } from '../../../shared/control/cluster.js';
import { decideLost, parseNodeLostEvent } from '../../../shared/control/nodeLost.js';
import type { RegisteredNode } from '../../../shared/control/types.js';
import { ecsTaskRunning, ecsTaskStopped, nodeLostEvents } from '../bus/catalogueExamples.js';

const TASK = ecsTaskStopped.detail.taskArn;

function view(nodes: RegisteredNode[] = []): ClusterView {
  return { registered: new Map(nodes.map((n) => [n.id, n])), cluster: { ejected: {}, lost: {} } };
}

describe('node lost: parsing the three witnesses', () => {
  it("reads the ECS Developer Guide's task event, mapped to the gateway by task ARN or task id", () => {
    const event = fromEventBridgeEvent(ecsTaskStopped);
    const byId = parseNodeLostEvent(event, new Map());
    expect(byId).toEqual({
      report: {
        node: 'c13b4cb40f1f4fe4a2971f76ae5a47ad',
        cause: 'ecs_task_stopped',
        causeText: 'task stopped: Essential container in task exited, EssentialContainerExited',
        at: Date.parse('2020-01-23T18:12:04Z'),
        incarnation: `task:${TASK}`,
        ecs: { taskArn: TASK, version: 5 },
      },
    });
    const byArn = parseNodeLostEvent(event, view([{ id: 'gateway-7', taskArn: TASK }]).registered);
    expect('report' in byArn && byArn.report.node).toBe('gateway-7');
    expect(parseNodeLostEvent(fromEventBridgeEvent(ecsTaskRunning), new Map())).toEqual({
      ignored: 'task is RUNNING',
    });
  });

  it('reads the supervisor and lease events', () => {
    const exited = parseNodeLostEvent(nodeLostEvents['Gateway Process Exited']!, new Map());
    expect(exited).toMatchObject({
      report: {
        node: 'gw-2',
        cause: 'process_exited',
        causeText: 'process exited (signal SIGKILL)',
        incarnation: 'pid:4242',
      },
    });
    const lease = parseNodeLostEvent(nodeLostEvents['Node Lease Expired']!, new Map());
    expect(lease).toMatchObject({ report: { node: 'gw-2', cause: 'lease_expired' } });
  });
});

describe('node lost: deciding', () => {
  it('ignores an ECS event of the same task with a version already handled', () => {
    const event = fromEventBridgeEvent(ecsTaskStopped);
    const parsed = parseNodeLostEvent(event, new Map());
    if (!('report' in parsed)) throw new Error('not parsed');
    const first = decideLost(undefined, parsed.report, event, view());
    expect(first.outcome).toBe('applied');
    const older = { ...parsed.report, ecs: { taskArn: TASK, version: 4 } };
    expect(decideLost(first.record, older, { ...event, id: 'other' }, view())).toMatchObject({
      outcome: 'duplicate',
      why: 'ECS version 4 ≤ 5 already handled',
    });
    const newer = { ...parsed.report, ecs: { taskArn: TASK, version: 6 } };
    expect(decideLost(first.record, newer, { ...event, id: 'third' }, view()).outcome).toBe(
      'duplicate',
    );
  });
});
