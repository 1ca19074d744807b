/**
 * Example events for the bus tests (catalogue, router, event patterns): AWS's documented
 * examples, and our own events made the way gateways and the control plane make them.
 */
import type { BusEvent } from '../../../shared/bus/EventBus.js';
import { DecisionEvents, NodeLostEvents } from '../../../shared/bus/controlEvents.js';
import { makeEvent, Sources } from '../../../shared/bus/events.js';
import { HealthEvents } from '../../../shared/health/events.js';

/**
 * The task state change event of the Amazon ECS Developer Guide ("Amazon ECS task state change
 * events", example task state change event), verbatim: a Fargate task that is RUNNING.
 */
export const ecsTaskRunning = {
  version: '0',
  id: '3317b2af-7005-947d-b652-f55e762e571a',
  'detail-type': 'ECS Task State Change',
  source: 'aws.ecs',
  account: '111122223333',
  time: '2020-01-23T17:57:58Z',
  region: 'us-west-2',
  resources: [
    'arn:aws:ecs:us-west-2:111122223333:task/FargateCluster/c13b4cb40f1f4fe4a2971f76ae5a47ad',
  ],
  detail: {
    attachments: [
      {
        id: '1789bcae-ddfb-4d10-8ebe-8ac87ddba5b8',
        type: 'eni',
        status: 'ATTACHED',
        details: [
          { name: 'subnetId', value: 'subnet-abcd1234' },
          { name: 'networkInterfaceId', value: 'eni-abcd1234' },
          { name: 'macAddress', value: '0a:98:eb:a7:29:ba' },
          { name: 'privateIPv4Address', value: '10.0.0.139' },
        ],
      },
    ],
    availabilityZone: 'us-west-2c',
    clusterArn: 'arn:aws:ecs:us-west-2:111122223333:cluster/FargateCluster',
    containers: [
      {
        containerArn:
          'arn:aws:ecs:us-west-2:111122223333:container/cf159fd6-3e3f-4a9e-84f9-66cbe726af01',
        lastStatus: 'RUNNING',
        name: 'FargateApp',
        image: '111122223333.dkr.ecr.us-west-2.amazonaws.com/hello-repository:latest',
        imageDigest: 'sha256:74b2c688c700ec95a93e478cdb959737c148df3fbf5ea706abe0318726e885e6',
        runtimeId: 'ad64cbc71c7fb31c55507ec24c9f77947132b03d48d9961115cf24f3b7307e1e',
        taskArn:
          'arn:aws:ecs:us-west-2:111122223333:task/FargateCluster/c13b4cb40f1f4fe4a2971f76ae5a47ad',
        networkInterfaces: [
          {
            attachmentId: '1789bcae-ddfb-4d10-8ebe-8ac87ddba5b8',
            privateIpv4Address: '10.0.0.139',
          },
        ],
        cpu: '0',
      },
    ],
    createdAt: '2020-01-23T17:57:34.402Z',
    launchType: 'FARGATE',
    cpu: '256',
    memory: '512',
    desiredStatus: 'RUNNING',
    group: 'family:sample-fargate',
    lastStatus: 'RUNNING',
    overrides: { containerOverrides: [{ name: 'FargateApp' }] },
    connectivity: 'CONNECTED',
    connectivityAt: '2020-01-23T17:57:38.453Z',
    pullStartedAt: '2020-01-23T17:57:52.103Z',
    startedAt: '2020-01-23T17:57:58.103Z',
    pullStoppedAt: '2020-01-23T17:57:55.103Z',
    updatedAt: '2020-01-23T17:57:58.103Z',
    taskArn:
      'arn:aws:ecs:us-west-2:111122223333:task/FargateCluster/c13b4cb40f1f4fe4a2971f76ae5a47ad',
    taskDefinitionArn: 'arn:aws:ecs:us-west-2:111122223333:task-definition/sample-fargate:1',
    version: 4,
    platformVersion: '1.3.0',
  },
};

/** The cluster of the documented example; the catalogue is configured with it. */
export const EXAMPLE_CLUSTER_ARN = ecsTaskRunning.detail.clusterArn;

/**
 * The same task once stopped: the documented example with the fields the guide says a stop
 * changes (lastStatus, desiredStatus, stoppedReason, stopCode, the container's status and exit
 * code, the stop times) and the next version.
 */
export const ecsTaskStopped = {
  ...ecsTaskRunning,
  id: '3317b2af-7005-947d-b652-f55e762e5720',
  time: '2020-01-23T18:12:04Z',
  detail: {
    ...ecsTaskRunning.detail,
    containers: [{ ...ecsTaskRunning.detail.containers[0]!, lastStatus: 'STOPPED', exitCode: 137 }],
    desiredStatus: 'STOPPED',
    lastStatus: 'STOPPED',
    stopCode: 'EssentialContainerExited',
    stoppedReason: 'Essential container in task exited',
    stoppingAt: '2020-01-23T18:12:01.214Z',
    executionStoppedAt: '2020-01-23T18:12:02.480Z',
    stoppedAt: '2020-01-23T18:12:04.103Z',
    updatedAt: '2020-01-23T18:12:04.103Z',
    version: 5,
  },
};

/** The "service task start impaired" service action event of the ECS Developer Guide. */
export const ecsServiceAction = {
  version: '0',
  id: '57c9506e-9d21-294c-d2fe-e8738da7e67d',
  'detail-type': 'ECS Service Action',
  source: 'aws.ecs',
  account: '111122223333',
  time: '2019-11-19T19:55:38Z',
  region: 'us-west-2',
  resources: ['arn:aws:ecs:us-west-2:111122223333:service/default/servicetest'],
  detail: {
    eventType: 'WARN',
    eventName: 'SERVICE_TASK_START_IMPAIRED',
    clusterArn: 'arn:aws:ecs:us-west-2:111122223333:cluster/default',
    createdAt: '2019-11-19T19:55:38.725Z',
  },
};

/** The EC2 instance state-change event of the EventBridge User Guide. */
export const ec2StateChange = {
  version: '0',
  id: '6a7e8feb-b491-4cf7-a9f1-bf3703467718',
  'detail-type': 'EC2 Instance State-change Notification',
  source: 'aws.ec2',
  account: '111122223333',
  time: '2017-12-22T18:43:48Z',
  region: 'us-west-1',
  resources: ['arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0'],
  detail: { 'instance-id': 'i-1234567890abcdef0', state: 'terminated' },
};

/** A gateway health event as the gateway's HealthReporter makes it. */
export function gatewayEvent(detailType: string, detail: Record<string, unknown> = {}): BusEvent {
  return makeEvent(Sources.gateway, detailType, { node: 'gw-1', ...detail }, ['gw-1']);
}

export function controlEvent(detailType: string, detail: Record<string, unknown> = {}): BusEvent {
  return makeEvent(Sources.control, detailType, { node: 'gw-2', ...detail }, ['gw-2']);
}

/** One event of every health detail-type, with the detail docs/health-events.md lists. */
export const healthEvents: Record<string, BusEvent> = {
  [HealthEvents.gatewayStarted]: gatewayEvent(HealthEvents.gatewayStarted, {
    url: 'http://127.0.0.1:8081',
  }),
  [HealthEvents.gatewayStopped]: gatewayEvent(HealthEvents.gatewayStopped, {
    url: 'http://127.0.0.1:8081',
  }),
  [HealthEvents.connectionsDegraded]: gatewayEvent(HealthEvents.connectionsDegraded, { count: 3 }),
  [HealthEvents.connectionsRecovered]: gatewayEvent(HealthEvents.connectionsRecovered, {
    count: 3,
  }),
  [HealthEvents.writeBlocked]: gatewayEvent(HealthEvents.writeBlocked, {
    slow_client: 2,
    network: 0,
    process: 0,
  }),
  [HealthEvents.flashCuts]: gatewayEvent(HealthEvents.flashCuts, {
    count: 4,
    peer: '10.0.0.7',
    state: 'CLOSE_WAIT',
    perMinute: 12,
  }),
  [HealthEvents.nodeOverloaded]: gatewayEvent(HealthEvents.nodeOverloaded, {
    rule: 'cpu',
    reason: 'CPU > 95 % for 30 s',
    cpuUtilisation: 0.97,
    eventLoopDelayMs: 12,
  }),
  [HealthEvents.nodeRecovered]: gatewayEvent(HealthEvents.nodeRecovered, {
    rule: 'cpu',
    cpuUtilisation: 0.4,
    eventLoopDelayMs: 3,
  }),
  [HealthEvents.canaryFailing]: gatewayEvent(HealthEvents.canaryFailing, { misses: 3 }),
  [HealthEvents.canaryRecovered]: gatewayEvent(HealthEvents.canaryRecovered, { latencyMs: 4 }),
};

/** Supervisor and lease events, with the detail the supervisor sends. */
export const nodeLostEvents: Record<string, BusEvent> = {
  [NodeLostEvents.gatewayProcessExited]: controlEvent(NodeLostEvents.gatewayProcessExited, {
    port: 8082,
    pid: 4242,
    code: null,
    signal: 'SIGKILL',
    uptimeMs: 61_000,
    restartInMs: 512,
    attempt: 0,
  }),
  [NodeLostEvents.nodeLeaseExpired]: controlEvent(NodeLostEvents.nodeLeaseExpired, {
    lease: 'lease-7',
  }),
};

export const decisionEvents: Record<string, BusEvent> = Object.fromEntries(
  Object.values(DecisionEvents).map((type) => [type, controlEvent(type, { reason: 'test' })]),
);
