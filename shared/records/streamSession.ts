/**
 * StreamSession (seed 4.1): one client session as the control plane sees it, a validated,
 * versioned record.
 *
 *   apiVersion: streamheal.io/v2
 *   kind: StreamSession
 *   metadata: { name: sess_abc123 }
 *   spec:
 *     sessionId: sess_abc123        immutable
 *     clusterId: local              immutable
 *     nodeId: gateway-1             the gateway holding it (absent while Pending)
 *     failoverPolicy: default       v2 only; v1 records read as "default"
 *     timeoutSeconds: 300           30–3600, idle timeout
 *     replicationLagThresholdMs: 500  ≥ 0; 0 disables lag detection
 *   status:
 *     phase: Active                 Pending | Active | Failed | Terminated (see phases.ts)
 *     failoverAttempts: 0           v2 only; v1 records read as 0
 *     lastTransitionTime: 2024-…Z   when the phase last changed
 *     message: …                    why (free text)
 */
import { z } from 'zod';
import { DEFAULT_POLICY_NAME } from './failoverPolicy.js';
import {
  API_V1,
  API_V2,
  MetadataSchema,
  MetadataV2Schema,
  NameSchema,
  ReplicationLagThresholdMsSchema,
  TimeoutSecondsSchema,
  changedMetadataIds,
  convertVersion,
  safeParseVersioned,
  stashConversionData,
  takeConversionData,
  type SchemaVersion,
  type VersionConversions,
} from './meta.js';
import {
  INITIAL_PHASES,
  SESSION_PHASES,
  isFailover,
  isLegalTransition,
  nextPhases,
  type SessionPhase,
} from './phases.js';
import {
  IllegalTransitionError,
  ImmutableFieldError,
  immutable,
  valueOrThrow,
  type RecordIssue,
  type Validated,
} from './validation.js';

export const STREAM_SESSION_KIND = 'StreamSession';

const IdSchema = z.string().min(1).max(200);

const specFields = {
  sessionId: IdSchema,
  clusterId: IdSchema,
  nodeId: IdSchema.optional(),
  timeoutSeconds: TimeoutSecondsSchema,
  replicationLagThresholdMs: ReplicationLagThresholdMsSchema,
};

const statusFields = {
  phase: z.enum(SESSION_PHASES).default('Pending'),
  lastTransitionTime: z.iso.datetime().optional(),
  message: z.string().max(1024).optional(),
};

export const StreamSessionSpecV1Schema = z.strictObject(specFields);
export const StreamSessionSpecV2Schema = z.strictObject({
  ...specFields,
  /** Name of the FailoverPolicy that governs this session. */
  failoverPolicy: NameSchema.default(DEFAULT_POLICY_NAME),
});

export const StreamSessionStatusV1Schema = z.strictObject(statusFields);
export const StreamSessionStatusV2Schema = z.strictObject({
  ...statusFields,
  /** Failovers so far (Failed → Active); compared with the policy's `maxFailoverAttempts`. */
  failoverAttempts: z.number().int().min(0).max(1_000_000).default(0),
});

export const StreamSessionV1Schema = z.strictObject({
  apiVersion: z.literal(API_V1),
  kind: z.literal(STREAM_SESSION_KIND),
  metadata: MetadataSchema,
  spec: StreamSessionSpecV1Schema,
  status: StreamSessionStatusV1Schema.default(() => StreamSessionStatusV1Schema.parse({})),
});

export const StreamSessionV2Schema = z.strictObject({
  apiVersion: z.literal(API_V2),
  kind: z.literal(STREAM_SESSION_KIND),
  metadata: MetadataV2Schema,
  spec: StreamSessionSpecV2Schema,
  status: StreamSessionStatusV2Schema.default(() => StreamSessionStatusV2Schema.parse({})),
});

export const StreamSessionAnySchema = z.discriminatedUnion('apiVersion', [
  StreamSessionV1Schema,
  StreamSessionV2Schema,
]);

export type StreamSessionV1 = z.output<typeof StreamSessionV1Schema>;
export type StreamSessionV2 = z.output<typeof StreamSessionV2Schema>;
export type StreamSession = StreamSessionV2;
export type StreamSessionAny = StreamSessionV1 | StreamSessionV2;

const ConversionDataSchema = z.strictObject({
  spec: z
    .strictObject({ failoverPolicy: StreamSessionSpecV2Schema.shape.failoverPolicy })
    .optional(),
  status: z
    .strictObject({ failoverAttempts: StreamSessionStatusV2Schema.shape.failoverAttempts })
    .optional(),
});
type ConversionData = z.output<typeof ConversionDataSchema>;

/** v1 → v2: the v2-only fields from the conversion annotation, else "default" and 0. */
export function streamSessionV1ToV2(v1: StreamSessionV1): StreamSessionV2 {
  const { metadata, spec, status } = structuredClone(v1);
  const data = takeConversionData(metadata, ConversionDataSchema);
  return {
    apiVersion: API_V2,
    kind: STREAM_SESSION_KIND,
    metadata,
    spec: { ...spec, failoverPolicy: data.spec?.failoverPolicy ?? DEFAULT_POLICY_NAME },
    status: { ...status, failoverAttempts: data.status?.failoverAttempts ?? 0 },
  };
}

/** v2 → v1: the v2-only fields that are not their defaults go to the conversion annotation. */
export function streamSessionV2ToV1(v2: StreamSessionV2): StreamSessionV1 {
  const { metadata, spec, status } = structuredClone(v2);
  const { failoverPolicy, ...v1Spec } = spec;
  const { failoverAttempts, ...v1Status } = status;
  const data: ConversionData = {};
  if (failoverPolicy !== DEFAULT_POLICY_NAME) data.spec = { failoverPolicy };
  if (failoverAttempts !== 0) data.status = { failoverAttempts };
  stashConversionData(metadata, data);
  return {
    apiVersion: API_V1,
    kind: STREAM_SESSION_KIND,
    metadata,
    spec: v1Spec,
    status: v1Status,
  };
}

const CONVERSIONS: VersionConversions<StreamSessionV1, StreamSessionV2> = {
  v1ToV2: streamSessionV1ToV2,
  v2ToV1: streamSessionV2ToV1,
};

export function convertStreamSession(record: StreamSessionAny, to: 'v1'): StreamSessionV1;
export function convertStreamSession(record: StreamSessionAny, to: 'v2'): StreamSessionV2;
export function convertStreamSession(record: StreamSessionAny, to: SchemaVersion): StreamSessionAny;
export function convertStreamSession(
  record: StreamSessionAny,
  to: SchemaVersion,
): StreamSessionAny {
  return convertVersion(record, to, CONVERSIONS);
}

/** Validates a session of either version (defaults filled in) and returns it as v2. */
export function safeParseStreamSession(data: unknown): Validated<StreamSession> {
  return safeParseVersioned(StreamSessionAnySchema, data, CONVERSIONS);
}

/** Like `safeParseStreamSession`; throws RecordValidationError ('invalid_record'). */
export function parseStreamSession(data: unknown): StreamSession {
  return valueOrThrow(safeParseStreamSession(data));
}

/**
 * An update of `previous` to `next`: the ids (name, uid, spec.sessionId, spec.clusterId) stay
 * (ImmutableFieldError), and the phase moves along a legal edge (IllegalTransitionError).
 */
export function checkSessionUpdate(previous: StreamSession, next: StreamSession): void {
  const issues = changedMetadataIds(previous.metadata, next.metadata);
  for (const id of ['sessionId', 'clusterId'] as const) {
    if (next.spec[id] !== previous.spec[id]) {
      issues.push(immutable(['spec', id], previous.spec[id], next.spec[id]));
    }
  }
  if (issues.length) throw new ImmutableFieldError(issues);
  const from = previous.status.phase;
  const to = next.status.phase;
  if (!isLegalTransition(from, to)) throw new IllegalTransitionError([transitionIssue(from, to)]);
}

/** A new session must start Pending or Active. */
export function checkSessionCreate(session: StreamSession): void {
  if (!INITIAL_PHASES.includes(session.status.phase)) {
    throw new IllegalTransitionError([
      {
        path: ['status', 'phase'],
        message: `a new session starts ${INITIAL_PHASES.map((p) => `"${p}"`).join(' or ')}, not "${session.status.phase}"`,
      },
    ]);
  }
}

function transitionIssue(from: SessionPhase, to: SessionPhase): RecordIssue {
  const allowed = nextPhases(from);
  return {
    path: ['status', 'phase'],
    message: `cannot go from "${from}" to "${to}" (${
      allowed.length
        ? `from "${from}": ${allowed.map((p) => `"${p}"`).join(', ')}`
        : `"${from}" is final`
    })`,
  };
}

export interface TransitionOptions {
  /** @default Date.now() */
  now?: number;
  message?: string;
  /** The gateway that holds the session from now on (Active). */
  nodeId?: string;
}

/**
 * The session moved to phase `to`: a new record (the argument is not changed) with the phase,
 * the transition time and message, and one more failover attempt on Failed → Active. Moving to
 * the phase it already has returns an unchanged copy. Throws IllegalTransitionError.
 */
export function transitionSession(
  session: StreamSession,
  to: SessionPhase,
  options: TransitionOptions = {},
): StreamSession {
  const from = session.status.phase;
  if (!isLegalTransition(from, to)) throw new IllegalTransitionError([transitionIssue(from, to)]);
  const next = structuredClone(session);
  if (options.nodeId !== undefined) next.spec.nodeId = options.nodeId;
  if (from === to) return next;
  next.status.phase = to;
  next.status.lastTransitionTime = new Date(options.now ?? Date.now()).toISOString();
  if (options.message !== undefined) next.status.message = options.message;
  else delete next.status.message;
  if (isFailover(from, to)) next.status.failoverAttempts += 1;
  return next;
}

/** Whether a Failed session may fail over once more under a policy's `maxFailoverAttempts`. */
export function mayFailOver(session: StreamSession, maxFailoverAttempts: number): boolean {
  return session.status.phase === 'Failed' && session.status.failoverAttempts < maxFailoverAttempts;
}
