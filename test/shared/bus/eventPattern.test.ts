/**
 * Patterns and events quoted from the EventBridge user guide (eb-event-patterns,
 * eb-event-patterns-null-values, eb-event-patterns-arrays, eb-event-patterns-content-based-filtering,
 * eb-create-pattern-operators) and from the README of aws/event-ruler, the library behind
 * EventBridge matching. Events the docs only describe are written out next to the pattern.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { EventPattern } from '../../../shared/bus/EventBus.js';
import {
  InvalidPatternError,
  matchesPattern,
  validatePattern,
} from '../../../shared/bus/eventPattern.js';
import { ec2StateChange } from './catalogueExamples.js';

/** Validates first, as every caller must, then matches. */
function matches(pattern: EventPattern, event: unknown): boolean {
  validatePattern(pattern);
  return matchesPattern(pattern, event);
}

const autoscalingEvent = {
  version: '0',
  id: '3e3c153a-8339-4e30-8c35-687ebef853fe',
  'detail-type': 'EC2 Instance Launch Successful',
  source: 'aws.autoscaling',
  account: '123456789012',
  time: '2015-11-11T21:31:47Z',
  region: 'us-east-1',
  resources: [],
  detail: { eventVersion: '', responseElements: null },
};

const macieEvent = {
  version: '0',
  id: '3e355723-fca9-4de3-9fd7-154c289d6b59',
  'detail-type': 'Macie Alert',
  source: 'aws.macie',
  account: '123456789012',
  time: '2017-04-24T22:28:49Z',
  region: 'us-east-1',
  resources: [
    'arn:aws:macie:us-east-1:123456789012:trigger/trigger_id/alert/alert_id',
    'arn:aws:macie:us-east-1:123456789012:trigger/trigger_id',
  ],
  detail: {
    'notification-type': 'ALERT_CREATED',
    name: 'Scanning bucket policies',
    tags: ['Custom_Alert', 'Insider'],
    'risk-score': 80,
    trigger: {
      'rule-arn': 'arn:aws:macie:us-east-1:123456789012:trigger/trigger_id',
      'alert-type': 'basic',
      risk: 8,
    },
  },
};

/** The sample event of the event-ruler README. */
const rulerEvent = {
  version: '0',
  id: 'ddddd4-aaaa-7777-4444-345dd43cc333',
  'detail-type': 'EC2 Instance State-change Notification',
  source: 'aws.ec2',
  account: '012345679012',
  time: '2017-10-02T16:24:49Z',
  region: 'us-east-1',
  resources: ['arn:aws:ec2:us-east-1:123456789012:instance/i-000000aaaaaa00000'],
  detail: {
    'c-count': 5,
    'd-count': 3,
    'x-limit': 301.8,
    'source-ip': '10.0.0.33',
    'instance-id': 'i-000000aaaaaa00000',
    state: 'running',
  },
};

function withDetail(event: typeof rulerEvent, detail: Record<string, unknown>) {
  return { ...event, detail: { ...event.detail, ...detail } };
}

describe('matchesPattern: fields and values', () => {
  const terminations = {
    source: ['aws.ec2'],
    'detail-type': ['EC2 Instance State-change Notification'],
    detail: { state: ['terminated'] },
  };

  it('matches the EC2 instance-termination pattern only against terminated instances', () => {
    expect(matches(terminations, ec2StateChange)).toBe(true);
    expect(matches(terminations, { ...ec2StateChange, detail: { state: 'running' } })).toBe(false);
  });

  it('requires every field of the pattern, with the same nesting', () => {
    expect(matches(terminations, { ...ec2StateChange, detail: undefined })).toBe(false);
    expect(matches(terminations, { ...ec2StateChange, state: 'terminated', detail: {} })).toBe(
      false,
    );
    expect(matches({ detail: { 'instance-id': ['i-1234567890abcdef0'] } }, ec2StateChange)).toBe(
      true,
    );
  });

  it('treats the values of a field as alternatives', () => {
    const pattern = { source: ['aws.ec2', 'aws.fargate'] };
    expect(matches(pattern, ec2StateChange)).toBe(true);
    expect(matches(pattern, { source: 'aws.fargate' })).toBe(true);
    expect(matches(pattern, macieEvent)).toBe(false);
  });

  it('matches strings exactly, without case folding', () => {
    expect(matches({ source: ['AWS.EC2'] }, ec2StateChange)).toBe(false);
    expect(matches({ source: ['aws.ec'] }, ec2StateChange)).toBe(false);
  });

  it('matches numbers and nested fields (Macie risk score 80 and trigger risk 8)', () => {
    const pattern = {
      source: ['aws.macie'],
      'detail-type': ['Macie Alert'],
      detail: { 'risk-score': [80], trigger: { risk: [8] } },
    };
    expect(matches(pattern, macieEvent)).toBe(true);
    const lowerRisk = { ...macieEvent, detail: { ...macieEvent.detail, 'risk-score': 79 } };
    expect(matches(pattern, lowerRisk)).toBe(false);
    expect(matches({ detail: { 'risk-score': ['80'] } }, macieEvent)).toBe(false);
  });

  it('matches booleans exactly', () => {
    expect(matches({ detail: { draining: [true] } }, { detail: { draining: true } })).toBe(true);
    expect(matches({ detail: { draining: [true] } }, { detail: { draining: 'true' } })).toBe(false);
  });

  it('matches empty strings and nulls, which are not interchangeable', () => {
    expect(matches({ detail: { eventVersion: [''] } }, autoscalingEvent)).toBe(true);
    expect(matches({ detail: { responseElements: [null] } }, autoscalingEvent)).toBe(true);
    expect(
      matches(
        {
          source: ['aws.autoscaling'],
          'detail-type': ['EC2 Instance Launch Successful'],
          detail: { responseElements: [null] },
        },
        autoscalingEvent,
      ),
    ).toBe(true);
    expect(matches({ detail: { responseElements: [''] } }, autoscalingEvent)).toBe(false);
    expect(matches({ detail: { eventVersion: [null] } }, autoscalingEvent)).toBe(false);
  });
});

describe('matchesPattern: arrays in events', () => {
  const pattern = {
    resources: [
      'arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f',
      'arn:aws:ec2:us-east-1:111122223333:instance/i-b188560f',
      'arn:aws:ec2:us-east-1:444455556666:instance/i-b188560f',
    ],
  };

  it('matches when the pattern and event arrays intersect', () => {
    const event = {
      resources: [
        'arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:eb56d16b-bbf0-401d-b893-d5978ed4a025:autoScalingGroupName/ASGTerminate',
        'arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f',
      ],
    };
    expect(matches(pattern, event)).toBe(true);
  });

  it('does not match disjoint or empty event arrays', () => {
    expect(matches(pattern, { resources: ['arn:aws:ec2:us-east-1:1:instance/other'] })).toBe(false);
    expect(matches(pattern, { resources: [] })).toBe(false);
  });

  it('matches a nested pattern within one element of an array of objects', () => {
    const employees = {
      employees: [
        { firstName: 'John', lastName: 'Doe' },
        { firstName: 'Anna', lastName: 'Smith' },
        { firstName: 'Peter', lastName: 'Jones' },
      ],
    };
    expect(matches({ employees: { firstName: ['Anna'] } }, employees)).toBe(true);
    expect(matches({ employees: { firstName: ['Anna'], lastName: ['Jones'] } }, employees)).toBe(
      false,
    );
    const nested = { employees: [[employees.employees[0]], [employees.employees[2]]] };
    expect(matches({ employees: { firstName: ['Peter'] } }, nested)).toBe(true);
  });
});

describe('matchesPattern: prefix and suffix', () => {
  it('matches a prefix of string values only', () => {
    const pattern = { time: [{ prefix: '2017-10-02' }] };
    expect(matches(pattern, { time: '2017-10-02T18:43:48Z' })).toBe(true);
    expect(matches(pattern, { time: '2017-10-03T18:43:48Z' })).toBe(false);
    expect(matches({ year: [{ prefix: '20' }] }, { year: 2017 })).toBe(false);
  });

  it('matches Auto Scaling events from European regions', () => {
    const pattern = { source: ['aws.autoscaling'], region: [{ prefix: 'eu-' }] };
    expect(matches(pattern, { ...autoscalingEvent, region: 'eu-west-1' })).toBe(true);
    expect(matches(pattern, autoscalingEvent)).toBe(false);
  });

  it('matches a prefix regardless of case', () => {
    const pattern = { detail: { service: [{ prefix: { 'equals-ignore-case': 'EventB' } }] } };
    for (const service of ['EventBridge', 'EVENTBRIDGE', 'eventbridge']) {
      expect(matches(pattern, { detail: { service } })).toBe(true);
    }
    expect(matches(pattern, { detail: { service: 'Bridge' } })).toBe(false);
  });

  it('matches a suffix, case-sensitively unless told otherwise', () => {
    expect(matches({ FileName: [{ suffix: '.png' }] }, { FileName: 'image.png' })).toBe(true);
    expect(matches({ FileName: [{ suffix: '.png' }] }, { FileName: 'image.PNG' })).toBe(false);
    const ignoringCase = { detail: { FileName: [{ suffix: { 'equals-ignore-case': '.png' } }] } };
    expect(matches(ignoringCase, { detail: { FileName: 'image.PNG' } })).toBe(true);
    expect(matches(ignoringCase, { detail: { FileName: 'image.jpg' } })).toBe(false);
    const service = { service: [{ suffix: { 'equals-ignore-case': 'tBridge' } }] };
    expect(matches(service, { service: 'EVENTBRIDGE' })).toBe(true);
  });
});

describe('matchesPattern: equals-ignore-case', () => {
  it('matches a string in any casing', () => {
    const pattern = { Name: [{ 'equals-ignore-case': 'alice' }] };
    expect(matches(pattern, { Name: 'Alice' })).toBe(true);
    expect(matches(pattern, { Name: 'ALICE' })).toBe(true);
    expect(matches(pattern, { Name: 'Alicia' })).toBe(false);
    expect(matches({ source: [{ 'equals-ignore-case': 'EC2' }] }, { source: 'ec2' })).toBe(true);
  });
});

describe('matchesPattern: anything-but', () => {
  it('excludes a single string or number', () => {
    const state = { detail: { state: [{ 'anything-but': 'initializing' }] } };
    expect(matches(state, { detail: { state: 'running' } })).toBe(true);
    expect(matches(state, { detail: { state: 'initializing' } })).toBe(false);
    const limit = { detail: { 'x-limit': [{ 'anything-but': 123 }] } };
    expect(matches(limit, { detail: { 'x-limit': 124 } })).toBe(true);
    expect(matches(limit, { detail: { 'x-limit': 123 } })).toBe(false);
    expect(matches(limit, { detail: { 'x-limit': '123' } })).toBe(true);
  });

  it('excludes a list of strings or of numbers', () => {
    const states = { detail: { state: [{ 'anything-but': ['stopped', 'overloaded'] }] } };
    expect(matches(states, { detail: { state: 'running' } })).toBe(true);
    expect(matches(states, { detail: { state: 'overloaded' } })).toBe(false);
    const limits = { detail: { 'x-limit': [{ 'anything-but': [100, 200, 300] }] } };
    expect(matches(limits, { detail: { 'x-limit': 150 } })).toBe(true);
    expect(matches(limits, { detail: { 'x-limit': 200 } })).toBe(false);
  });

  it('excludes CloudTrail API calls and events from EC2 or S3', () => {
    const noCloudTrail = { 'detail-type': [{ 'anything-but': 'AWS API Call via CloudTrail' }] };
    expect(matches(noCloudTrail, ec2StateChange)).toBe(true);
    expect(matches(noCloudTrail, { 'detail-type': 'AWS API Call via CloudTrail' })).toBe(false);
    const noEc2OrS3 = { source: [{ 'anything-but': ['aws.ec2', 'aws.s3'] }] };
    expect(matches(noEc2OrS3, macieEvent)).toBe(true);
    expect(matches(noEc2OrS3, ec2StateChange)).toBe(false);
  });

  it('excludes a prefix, such as the "aws." of all AWS events', () => {
    const ownEvents = { source: [{ 'anything-but': { prefix: 'aws.' } }] };
    expect(matches(ownEvents, { source: 'streamheal.gateway' })).toBe(true);
    expect(matches(ownEvents, ec2StateChange)).toBe(false);
    const notInit = { detail: { state: [{ 'anything-but': { prefix: 'init' } }] } };
    expect(matches(notInit, { detail: { state: 'initializing' } })).toBe(false);
    const notUs = { Region: [{ 'anything-but': { prefix: 'us-' } }] };
    expect(matches(notUs, { Region: 'eu-west-1' })).toBe(true);
  });

  it('excludes a suffix', () => {
    const pattern = { FileName: [{ 'anything-but': { suffix: '.png' } }] };
    expect(matches(pattern, { FileName: 'notes.txt' })).toBe(true);
    expect(matches(pattern, { FileName: 'image.png' })).toBe(false);
  });

  it('excludes a value in any casing, or any of a list', () => {
    const pattern = { state: [{ 'anything-but': { 'equals-ignore-case': 'initializing' } }] };
    expect(matches(pattern, { state: 'INITIALIZING' })).toBe(false);
    expect(matches(pattern, { state: 'running' })).toBe(true);
    const list = {
      state: [{ 'anything-but': { 'equals-ignore-case': ['Stopped', 'Overloaded'] } }],
    };
    expect(matches(list, { state: 'STOPPED' })).toBe(false);
    expect(matches(list, { state: 'running' })).toBe(true);
  });

  it('excludes a wildcard, such as paths that include /lib/', () => {
    const pattern = { FilePath: [{ 'anything-but': { wildcard: '*/lib/*' } }] };
    expect(matches(pattern, { FilePath: '/usr/lib/libc.so' })).toBe(false);
    expect(matches(pattern, { FilePath: '/usr/bin/env' })).toBe(true);
    const list = { FilePath: [{ 'anything-but': { wildcard: ['*/lib/*', '*/bin/*'] } }] };
    expect(matches(list, { FilePath: '/usr/bin/env' })).toBe(false);
    expect(matches(list, { FilePath: '/etc/hosts' })).toBe(true);
  });

  it('does not match a missing field, which has no value to differ', () => {
    expect(matches({ state: [{ 'anything-but': 'initializing' }] }, {})).toBe(false);
  });
});

describe('matchesPattern: numeric', () => {
  const counts = {
    detail: {
      'c-count': [{ numeric: ['>', 0, '<=', 5] }],
      'd-count': [{ numeric: ['<', 10] }],
      'x-limit': [{ numeric: ['=', 3.018e2] }],
    },
  };

  it('matches only when every numeric field is in range', () => {
    expect(matches(counts, rulerEvent)).toBe(true);
    expect(matches(counts, withDetail(rulerEvent, { 'c-count': 0 }))).toBe(false);
    expect(matches(counts, withDetail(rulerEvent, { 'c-count': 6 }))).toBe(false);
    expect(matches(counts, withDetail(rulerEvent, { 'd-count': 10 }))).toBe(false);
    expect(matches(counts, withDetail(rulerEvent, { 'x-limit': 301.9 }))).toBe(false);
  });

  it('matches JSON numbers only', () => {
    expect(matches(counts, withDetail(rulerEvent, { 'c-count': '5' }))).toBe(false);
  });

  it('honours open and closed bounds (Price more than 10, at most 20; Price is 100)', () => {
    const range = { Price: [{ numeric: ['>', 10, '<=', 20] }] };
    expect([10, 10.5, 20, 20.1].map((Price) => matches(range, { Price }))).toEqual([
      false,
      true,
      true,
      false,
    ]);
    const closed = { Price: [{ numeric: ['>=', 10, '<', 20] }] };
    expect([10, 20].map((Price) => matches(closed, { Price }))).toEqual([true, false]);
    expect(matches({ Price: [{ numeric: ['=', 100] }] }, { Price: 100 })).toBe(true);
  });
});

describe('matchesPattern: exists', () => {
  const noCount = { detail: { 'c-count': [{ exists: false }] } };

  it('matches events without the field, including where it is not a leaf', () => {
    const stateChange = {
      'detail-type': ['EC2 Instance State-change Notification'],
      resources: ['arn:aws:ec2:us-east-1:123456789012:instance/i-02ebd4584a2ebd341'],
      detail: { state: ['initializing', 'running'] },
    };
    expect(matches(noCount, stateChange)).toBe(true);
    const objectCount = {
      ...stateChange,
      detail: { ...stateChange.detail, 'c-count': { c1: 100 } },
    };
    expect(matches(noCount, objectCount)).toBe(true);
    expect(matches(noCount, rulerEvent)).toBe(false);
    expect(matches(noCount, { source: 'no detail at all' })).toBe(true);
  });

  it('matches events that have the field as a leaf, even when null', () => {
    const withDescription = { detail: { description: [{ exists: true }] } };
    expect(matches(withDescription, { detail: { description: 'text' } })).toBe(true);
    expect(matches(withDescription, { detail: { description: null } })).toBe(true);
    expect(matches(withDescription, { detail: { description: { text: 'x' } } })).toBe(false);
    expect(matches(withDescription, { detail: {} })).toBe(false);
    expect(matches({ ProductName: [{ exists: true }] }, { ProductName: 'Widget' })).toBe(true);
  });
});

describe('matchesPattern: wildcard', () => {
  it('matches any run of characters for each star', () => {
    const png = { FileName: [{ wildcard: 'dir/*.png' }] };
    expect(matches(png, { FileName: 'dir/image.png' })).toBe(true);
    expect(matches(png, { FileName: 'dir/sub/image.png' })).toBe(true);
    expect(matches(png, { FileName: 'other/image.png' })).toBe(false);
    expect(matches(png, { FileName: 'dir/image.png.txt' })).toBe(false);
    const service = { source: [{ wildcard: 'Simple*Service' }] };
    expect(matches(service, { source: 'SimpleQueueService' })).toBe(true);
    expect(matches(service, { source: 'SimpleService' })).toBe(true);
    expect(matches(service, { source: 'ComplexService' })).toBe(false);
  });

  it('treats regular-expression characters literally', () => {
    expect(matches({ f: [{ wildcard: 'a.c*' }] }, { f: 'abc' })).toBe(false);
    expect(matches({ f: [{ wildcard: '(x)+*' }] }, { f: '(x)+y' })).toBe(true);
  });

  it('reads \\* as a literal star and \\\\ as a literal backslash', () => {
    const star = { f: [{ wildcard: 'a\\*b' }] };
    expect(matches(star, { f: 'a*b' })).toBe(true);
    expect(matches(star, { f: 'axb' })).toBe(false);
    const backslash = { f: [{ wildcard: 'C:\\\\*' }] };
    expect(matches(backslash, { f: 'C:\\Windows' })).toBe(true);
    expect(matches(backslash, { f: 'C:Windows' })).toBe(false);
  });
});

describe('matchesPattern: $or', () => {
  it('matches when any alternative matches (Location is New York, or Day is Monday)', () => {
    const pattern = { $or: [{ Location: ['New York'] }, { Day: ['Monday'] }] };
    expect(matches(pattern, { Location: 'Boston', Day: 'Monday' })).toBe(true);
    expect(matches(pattern, { Location: 'New York', Day: 'Friday' })).toBe(true);
    expect(matches(pattern, { Location: 'Boston', Day: 'Friday' })).toBe(false);
  });

  it('combines with the other fields by AND', () => {
    const pattern = {
      source: ['aws.cloudwatch'],
      $or: [
        { metricName: ['CPUUtilization', 'ReadLatency'] },
        { namespace: ['AWS/EC2', 'AWS/ES'] },
      ],
    };
    expect(matches(pattern, { source: 'aws.cloudwatch', namespace: 'AWS/ES' })).toBe(true);
    expect(matches(pattern, { source: 'aws.ec2', namespace: 'AWS/ES' })).toBe(false);
  });

  it('nests inside objects and inside other alternatives', () => {
    const pattern = {
      source: ['aws.cloudwatch'],
      $or: [
        { metricName: ['CPUUtilization', 'ReadLatency'] },
        {
          metricType: ['MetricType'],
          namespace: ['AWS/EC2', 'AWS/ES'],
          $or: [{ metricId: [1234] }, { spaceId: [1000] }],
        },
        { scope: ['Service'] },
      ],
    };
    const base = { source: 'aws.cloudwatch', metricType: 'MetricType', namespace: 'AWS/EC2' };
    expect(matches(pattern, { ...base, spaceId: 1000 })).toBe(true);
    expect(matches(pattern, { ...base, spaceId: 999 })).toBe(false);

    const inDetail = {
      detail: {
        $or: [
          { 'c-count': [{ numeric: ['>', 0, '<=', 5] }] },
          { 'd-count': [{ numeric: ['<', 10] }] },
        ],
      },
    };
    expect(matches(inDetail, withDetail(rulerEvent, { 'c-count': 50 }))).toBe(true);
    expect(matches(inDetail, withDetail(rulerEvent, { 'c-count': 50, 'd-count': 50 }))).toBe(false);
  });
});

describe('matchesPattern: combined operators', () => {
  it('matches the complex example only when every condition holds', () => {
    const pattern = {
      time: [{ prefix: '2017-10-02' }],
      detail: {
        state: [{ 'anything-but': 'initializing' }],
        'c-count': [{ numeric: ['>', 0, '<=', 5] }],
        'd-count': [{ numeric: ['<', 10] }],
        'x-limit': [{ 'anything-but': [100, 200, 300] }],
      },
    };
    expect(matches(pattern, rulerEvent)).toBe(true);
    expect(matches(pattern, withDetail(rulerEvent, { state: 'initializing' }))).toBe(false);
    expect(matches(pattern, withDetail(rulerEvent, { 'x-limit': 200 }))).toBe(false);
    expect(matches(pattern, { ...rulerEvent, time: '2017-10-03T00:00:00Z' })).toBe(false);
  });

  it('reads only own properties of the event, as its JSON would carry them', () => {
    expect(matches({ inherited: ['x'] }, Object.create({ inherited: 'x' }))).toBe(false);
    expect(matches({ inherited: ['x'] }, { inherited: 'x' })).toBe(true);
  });
});

/**
 * Every row of the user guide's summary table of comparison operators (eb-create-pattern-operators):
 * its rule syntax, an event the row's example describes, and one it excludes.
 */
const operatorTable: [string, EventPattern, Record<string, unknown>, Record<string, unknown>][] = [
  ['Null: UserID is null', { UserID: [null] }, { UserID: null }, { UserID: 'u-1' }],
  ['Empty: LastName is empty', { LastName: [''] }, { LastName: '' }, { LastName: 'Doe' }],
  ['Equals: Name is "Alice"', { Name: ['Alice'] }, { Name: 'Alice' }, { Name: 'alice' }],
  [
    'Equals (ignore case): Name is "Alice"',
    { Name: [{ 'equals-ignore-case': 'alice' }] },
    { Name: 'ALICE' },
    { Name: 'Alicia' },
  ],
  [
    'And: Location is "New York" and Day is "Monday"',
    { Location: ['New York'], Day: ['Monday'] },
    { Location: 'New York', Day: 'Monday' },
    { Location: 'New York', Day: 'Friday' },
  ],
  [
    'Or: PaymentType is "Credit" or "Debit"',
    { PaymentType: ['Credit', 'Debit'] },
    { PaymentType: 'Debit' },
    { PaymentType: 'Cash' },
  ],
  [
    'Or (multiple fields): Location is "New York", or Day is "Monday"',
    { $or: [{ Location: ['New York'] }, { Day: ['Monday'] }] },
    { Location: 'Boston', Day: 'Monday' },
    { Location: 'Boston', Day: 'Friday' },
  ],
  [
    'Not: Weather is anything but "Raining"',
    { Weather: [{ 'anything-but': ['Raining'] }] },
    { Weather: 'Sunny' },
    { Weather: 'Raining' },
  ],
  [
    'Numeric (equals): Price is 100',
    { Price: [{ numeric: ['=', 100] }] },
    { Price: 100 },
    { Price: 101 },
  ],
  [
    'Numeric (range): Price is more than 10, and less than or equal to 20',
    { Price: [{ numeric: ['>', 10, '<=', 20] }] },
    { Price: 20 },
    { Price: 10 },
  ],
  [
    'Exists: ProductName exists',
    { ProductName: [{ exists: true }] },
    { ProductName: 'Widget' },
    { Product: 'Widget' },
  ],
  [
    'Does not exist: ProductName does not exist',
    { ProductName: [{ exists: false }] },
    { Product: 'Widget' },
    { ProductName: 'Widget' },
  ],
  [
    'Begins with: Region is in the US',
    { Region: [{ prefix: 'us-' }] },
    { Region: 'us-east-1' },
    { Region: 'eu-west-1' },
  ],
  [
    'Begins with (ignore case): service name starts with "eventb"',
    { service: [{ prefix: { 'equals-ignore-case': 'eventb' } }] },
    { service: 'EventBridge' },
    { service: 'SNS' },
  ],
  [
    'Ends with: FileName ends with a .png extension',
    { FileName: [{ suffix: '.png' }] },
    { FileName: 'image.png' },
    { FileName: 'image.jpg' },
  ],
  [
    'Ends with (ignore case): service name ends with "tbridge"',
    { service: [{ suffix: { 'equals-ignore-case': 'tbridge' } }] },
    { service: 'EVENTBRIDGE' },
    { service: 'EventBus' },
  ],
  [
    'Anything-but: State is any value besides "initializing"',
    { state: [{ 'anything-but': 'initializing' }] },
    { state: 'running' },
    { state: 'initializing' },
  ],
  [
    'Anything-but (begins with): Region is not in the US',
    { Region: [{ 'anything-but': { prefix: 'us-' } }] },
    { Region: 'eu-west-1' },
    { Region: 'us-east-1' },
  ],
  [
    'Anything-but (ends with): FileName does not end with a .png extension',
    { FileName: [{ 'anything-but': { suffix: '.png' } }] },
    { FileName: 'notes.txt' },
    { FileName: 'image.png' },
  ],
  [
    'Anything-but (ignore case): State is anything besides "initializing" in any casing',
    { state: [{ 'anything-but': { 'equals-ignore-case': 'initializing' } }] },
    { state: 'running' },
    { state: 'INITIALIZING' },
  ],
  [
    'Anything-but using a wildcard: FilePath does not include /lib/',
    { FilePath: [{ 'anything-but': { wildcard: '*/lib/*' } }] },
    { FilePath: '/usr/bin/env' },
    { FilePath: '/usr/lib/libc.so' },
  ],
  [
    'Wildcard: any file with a .png extension, located within the folder "dir"',
    { FileName: [{ wildcard: 'dir/*.png' }] },
    { FileName: 'dir/image.png' },
    { FileName: 'dir/image.jpg' },
  ],
];

describe("matchesPattern: the user guide's table of comparison operators", () => {
  it.each(operatorTable)('%s', (_row, pattern, matching, excluded) => {
    expect(matches(pattern, matching)).toBe(true);
    expect(matches(pattern, excluded)).toBe(false);
  });
});

describe('validatePattern', () => {
  const malformed: [string, unknown, RegExp][] = [
    ['a non-object pattern', ['aws.ec2'], /at \$: expected a pattern object/],
    ['an empty pattern', {}, /at \$: empty objects/],
    ['a bare value', { source: 'aws.ec2' }, /at \$\.source: expected an array/],
    ['an empty value list', { source: [] }, /at \$\.source: empty arrays/],
    ['an empty nested pattern', { detail: {} }, /at \$\.detail: empty objects/],
    ['a nested array', { source: [['aws.ec2']] }, /at \$\.source\[0\]: expected a value/],
    ['an unknown operator', { source: [{ contains: 'ec2' }] }, /unknown operator "contains"/],
    [
      'two operators in one object',
      { n: [{ prefix: 'a', suffix: 'b' }] },
      /at \$\.n\[0\]: an operator object holds exactly one/,
    ],
    ['a prefix that is no string', { d: { s: [{ prefix: 1 }] } }, /at \$\.d\.s\[0\]\.prefix/],
    ['an unknown case option', { s: [{ suffix: { ignoreCase: 'x' } }] }, /\$\.s\[0\]\.suffix/],
    ['a non-boolean exists', { s: [{ exists: 'yes' }] }, /\$\.s\[0\]\.exists: expected true/],
    ['an unknown comparison', { n: [{ numeric: ['!=', 1] }] }, /\$\.n\[0\]\.numeric\[0\]/],
    ['a non-numeric bound', { n: [{ numeric: ['<', '1'] }] }, /\$\.n\[0\]\.numeric\[1\]/],
    ['a wrapped comparison', { n: [{ numeric: [['<'], 1] }] }, /\$\.n\[0\]\.numeric\[0\]/],
    ['a bound-less comparison', { n: [{ numeric: ['>'] }] }, /\$\.n\[0\]\.numeric: expected/],
    ['an upper bound first', { n: [{ numeric: ['<', 5, '>', 0] }] }, /a range is a lower bound/],
    ['an empty range', { n: [{ numeric: ['>', 5, '<', 5] }] }, /lower bound must be below/],
    ['"=" in a range', { n: [{ numeric: ['=', 1, '<', 5] }] }, /a range is a lower bound/],
    ['a mixed anything-but list', { s: [{ 'anything-but': ['a', 1] }] }, /only strings or only/],
    ['an empty anything-but list', { s: [{ 'anything-but': [] }] }, /non-empty list/],
    ['anything-but null', { s: [{ 'anything-but': null }] }, /\$\.s\[0\]\["anything-but"\]/],
    [
      'anything-but numeric',
      { s: [{ 'anything-but': { numeric: ['>', 1] } }] },
      /expected a string, a number, a list/,
    ],
    [
      'an anything-but prefix list',
      { s: [{ 'anything-but': { prefix: ['a'] } }] },
      /\["anything-but"\]\.prefix: expected a string/,
    ],
    ['consecutive wildcards', { f: [{ wildcard: 'a**' }] }, /consecutive wildcard/],
    ['a stray backslash', { f: [{ wildcard: 'a\\b' }] }, /only "\*" and "\\" may follow/],
    ['a trailing backslash', { f: [{ wildcard: 'a\\' }] }, /may follow a backslash/],
    [
      'a bad wildcard under anything-but',
      { f: [{ 'anything-but': { wildcard: ['*.png', 'a**'] } }] },
      /\$\.f\[0\]\["anything-but"\]\.wildcard\[1\]: consecutive/,
    ],
    [
      'cidr',
      { ip: [{ cidr: '10.0.0.0/24' }] },
      /\$\.ip\[0\]\.cidr: cidr matching is not supported/,
    ],
    [
      'a single $or alternative',
      { $or: [{ a: ['x'] }] },
      /\$\.\$or: expected an array of at least two/,
    ],
    ['an $or object', { $or: { a: ['x'] } }, /\$\.\$or: expected an array/],
    ['a bad $or alternative', { $or: [{ a: ['x'] }, { b: 'y' }] }, /at \$\.\$or\[1\]\.b: expected/],
    ['a non-identifier key', { 'detail-type': 'x' }, /at \$\["detail-type"\]: expected an array/],
  ];

  it.each(malformed)('rejects %s with the JSON path', (_name, pattern, message) => {
    expect(() => validatePattern(pattern)).toThrow(InvalidPatternError);
    expect(() => validatePattern(pattern)).toThrow(message);
  });

  it('accepts escaped stars next to wildcards and every documented operator', () => {
    const pattern = {
      a: ['x', 1, true, null, ''],
      b: [{ prefix: 'x' }, { prefix: { 'equals-ignore-case': 'x' } }, { suffix: 'x' }],
      c: [{ 'equals-ignore-case': 'x' }, { wildcard: 'a\\**b*' }, { exists: false }],
      d: [{ numeric: ['=', 1] }, { numeric: ['>=', -1, '<', 1e9] }, { 'anything-but': 1 }],
      e: [{ 'anything-but': { suffix: '.png' } }, { 'anything-but': { wildcard: '*x' } }],
      $or: [{ f: ['y'] }, { g: { h: [{ exists: true }] } }],
    };
    expect(() => validatePattern(pattern)).not.toThrow();
  });
});

describe('matchesPattern properties', () => {
  const text = fc.string({ unit: fc.constantFrom('a', 'b', 'A', '.'), maxLength: 6 });
  const wildcard = fc
    .array(fc.constantFrom('a', 'b', 'A', '.', '*'), { maxLength: 6 })
    .map((chars) => chars.join(''))
    .filter((pattern) => !pattern.includes('**'));
  const positiveCondition = fc.oneof(
    text.map((value) => ({ positive: value, excluded: value as unknown })),
    ...(['prefix', 'suffix', 'equals-ignore-case'] as const).map((operator) =>
      text.map((value) => ({ positive: { [operator]: value }, excluded: { [operator]: value } })),
    ),
    wildcard.map((value) => ({ positive: { wildcard: value }, excluded: { wildcard: value } })),
  );

  it('anything-but X matches a string exactly when X does not', () => {
    fc.assert(
      fc.property(positiveCondition, text, ({ positive, excluded }, value) => {
        const event = { field: value };
        const plain = matches({ field: [positive] }, event);
        const negated = matches({ field: [{ 'anything-but': excluded }] }, event);
        expect(negated).toBe(!plain);
      }),
    );
  });

  const jsonObject = fc.dictionary(
    fc.string().filter((key) => key !== '$or'),
    fc.jsonValue({ maxDepth: 3 }),
  );

  it('an exact pattern built from an event matches that event', () => {
    fc.assert(
      fc.property(jsonObject, (event) => {
        const pattern = exactPatternFrom(event);
        fc.pre(Object.keys(pattern).length > 0);
        expect(matches(pattern, event)).toBe(true);
      }),
    );
  });
});

/**
 * Every leaf field becomes `[value]`, every leaf array the list of its values. Fields a pattern
 * cannot state exactly are left out: empty arrays and objects, and arrays holding objects.
 */
function exactPatternFrom(object: Record<string, unknown>): EventPattern {
  const entries = Object.entries(object).flatMap(([key, value]): [string, unknown][] => {
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
      const nested = exactPatternFrom(value as Record<string, unknown>);
      return Object.keys(nested).length > 0 ? [[key, nested]] : [];
    }
    const values = [value].flat(Infinity);
    const allLeaves = values.every((item) => item === null || typeof item !== 'object');
    return values.length > 0 && allLeaves ? [[key, values]] : [];
  });
  return Object.fromEntries(entries);
}
