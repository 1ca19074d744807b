/**
 * What every record shares, Kubernetes style: `apiVersion` (`streamheal.io/v2`), `kind`, and
 * `metadata` (name, uid, labels, annotations). Two schema versions are served: v1 (the seed's
 * storage version) and v2 (current; what the repository stores and returns). Fields that only
 * v2 has survive a trip through v1 in one annotation, as Cluster API does it.
 */
import { z } from 'zod';
import {
  immutable,
  RecordValidationError,
  validate,
  type IssuePath,
  type RecordIssue,
  type Validated,
} from './validation.js';

export const API_GROUP = 'streamheal.io';
export const SCHEMA_VERSIONS = ['v1', 'v2'] as const;
export type SchemaVersion = (typeof SCHEMA_VERSIONS)[number];
/** The version records are stored in and converted to on read. */
export const CURRENT_VERSION: SchemaVersion = 'v2';

export const API_V1 = `${API_GROUP}/v1` as const;
export const API_V2 = `${API_GROUP}/v2` as const;
export type ApiVersion = typeof API_V1 | typeof API_V2;

export function apiVersionOf(version: SchemaVersion): ApiVersion {
  return version === 'v1' ? API_V1 : API_V2;
}

/**
 * On a v1 record: the v2-only fields whose values v1 cannot hold, as JSON, so that v2 → v1 →
 * v2 gives back the same record. Written only when they differ from what v1 → v2 would
 * default them to; reserved (refused) on v2 records.
 */
export const CONVERSION_ANNOTATION = `${API_GROUP}/conversion-data`;

/** Names become store keys (`policies/<name>`): letters, digits, `.`, `_`, `-`; no `/`. */
const NAME_PATTERN = /^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$/;

export const NameSchema = z.string().min(1).max(253).regex(NAME_PATTERN);

const MetadataFields = z.strictObject({
  /** Unique per kind; the record's key. Immutable: a different name is a different record. */
  name: NameSchema,
  /** Assigned by the repository when the record is created; immutable afterwards. */
  uid: z.string().min(1).max(128).optional(),
  /**
   * The store's version of the record: set on records read from the store, never stored.
   * Given on a write, the write succeeds only if the record still has this version.
   */
  resourceVersion: z.number().int().positive().optional(),
  labels: z.record(z.string().min(1).max(253), z.string().max(253)).optional(),
  annotations: z.record(z.string().min(1).max(253), z.string().max(65_536)).optional(),
});

/** Empty `labels` or `annotations` maps are dropped, so `{}` and absent are one record. */
export const MetadataSchema = MetadataFields.transform(tidyMetadata);

export type Metadata = z.output<typeof MetadataFields>;

/** Metadata of a v2 record: the conversion annotation belongs to v1 only. */
export const MetadataV2Schema = MetadataSchema.superRefine((meta, ctx) => {
  if (meta.annotations?.[CONVERSION_ANNOTATION] !== undefined) {
    ctx.addIssue({
      code: 'custom',
      path: ['annotations', CONVERSION_ANNOTATION],
      message: `reserved for ${API_V1} records`,
    });
  }
});

/** Session and policy timeouts (seed 4.1): idle timeout of a session. */
export const TimeoutSecondsSchema = z.number().int().min(30).max(3600).default(300);
/** Replication lag that triggers a failover decision; 0 disables lag detection (seed 4.1). */
export const ReplicationLagThresholdMsSchema = z
  .number()
  .int()
  .min(0)
  .max(Number.MAX_SAFE_INTEGER)
  .default(500);

/** A deep copy without `resourceVersion`: what is stored and compared. */
export function withoutResourceVersion<T extends { metadata: Metadata }>(record: T): T {
  const copy = structuredClone(record);
  delete copy.metadata.resourceVersion;
  return copy;
}

/** Drops empty `labels` and `annotations` maps (conversions leave no `{}` behind either). */
export function tidyMetadata(metadata: Metadata): Metadata {
  const tidy = { ...metadata };
  if (tidy.labels && Object.keys(tidy.labels).length === 0) delete tidy.labels;
  if (tidy.annotations && Object.keys(tidy.annotations).length === 0) delete tidy.annotations;
  return tidy;
}

/**
 * Takes the conversion annotation off `metadata` (changing it; empty annotations are dropped)
 * and returns its data validated by `schema`, or `{}` when there is none. A malformed
 * annotation is a RecordValidationError at the annotation's path.
 */
export function takeConversionData<T extends object>(
  metadata: Metadata,
  schema: z.ZodType<T>,
): Partial<T> {
  const text = metadata.annotations?.[CONVERSION_ANNOTATION];
  if (text === undefined) return {};
  const where: IssuePath = ['metadata', 'annotations', CONVERSION_ANNOTATION];
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw new RecordValidationError([{ path: where, message: 'must be JSON' }]);
  }
  const result = validate(schema, data);
  if (!result.ok) {
    throw new RecordValidationError(
      result.issues.map((issue) => ({
        path: where,
        message: `${issue.path.join('.') || '$'}: ${issue.message}`,
      })),
    );
  }
  delete metadata.annotations![CONVERSION_ANNOTATION];
  if (Object.keys(metadata.annotations!).length === 0) delete metadata.annotations;
  return result.value;
}

/** Puts `data` in the conversion annotation of `metadata` (changing it), if it has any field. */
export function stashConversionData(metadata: Metadata, data: object): void {
  if (Object.keys(data).length === 0) return;
  metadata.annotations = { ...metadata.annotations, [CONVERSION_ANNOTATION]: JSON.stringify(data) };
}

/**
 * One kind's two conversions. v2 is the hub: every conversion goes through it, so a kind only
 * needs these two whatever the pair of versions asked for.
 */
export interface VersionConversions<
  V1 extends { apiVersion: typeof API_V1 },
  V2 extends { apiVersion: typeof API_V2 },
> {
  v1ToV2(v1: V1): V2;
  v2ToV1(v2: V2): V1;
}

/** `record` in version `to`, as a new record (the argument is not changed). */
export function convertVersion<
  V1 extends { apiVersion: typeof API_V1 },
  V2 extends { apiVersion: typeof API_V2 },
>(record: V1 | V2, to: SchemaVersion, conversions: VersionConversions<V1, V2>): V1 | V2 {
  const v2 = isV1(record) ? conversions.v1ToV2(record) : structuredClone(record);
  return to === 'v2' ? v2 : conversions.v2ToV1(v2);
}

/**
 * Validates a record of either version with `schema` (defaults filled in) and returns it as
 * v2, or every problem with its path; a malformed conversion annotation is one of them.
 */
export function safeParseVersioned<
  V1 extends { apiVersion: typeof API_V1 },
  V2 extends { apiVersion: typeof API_V2 },
>(
  schema: z.ZodType<V1 | V2>,
  data: unknown,
  conversions: VersionConversions<V1, V2>,
): Validated<V2> {
  const result = validate(schema, data);
  if (!result.ok) return result;
  try {
    return { ok: true, value: convertVersion(result.value, 'v2', conversions) as V2 };
  } catch (error) {
    if (error instanceof RecordValidationError) return { ok: false, issues: error.issues };
    throw error;
  }
}

function isV1<V1 extends { apiVersion: typeof API_V1 }>(
  record: V1 | { apiVersion: typeof API_V2 },
): record is V1 {
  return record.apiVersion === API_V1;
}

/**
 * The ids every kind keeps on an update: the name (the record's key) and the uid once
 * assigned (an update that leaves it out keeps the stored one).
 */
export function changedMetadataIds(previous: Metadata, next: Metadata): RecordIssue[] {
  const issues: RecordIssue[] = [];
  if (next.name !== previous.name) {
    issues.push(immutable(['metadata', 'name'], previous.name, next.name));
  }
  if (next.uid !== undefined && next.uid !== previous.uid) {
    issues.push(immutable(['metadata', 'uid'], previous.uid, next.uid));
  }
  return issues;
}
