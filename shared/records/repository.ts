/**
 * Policies and sessions in the state store (any adapter: embedded, RemoteStore over the control
 * link, etcd, DynamoDB), as validated records under `policies/<name>` and `sessions/<name>`.
 *
 * - Every write is conditional on the version it read (or on the version the caller pins), so
 *   two writers never overwrite each other unknowingly; a write that did not pin a version is
 *   retried on a fresh read when it loses a race.
 * - Records are stored in the current schema version (v2); records stored as v1 (by an older
 *   release) are read and converted, and rewritten as v2 by the next write.
 * - Ids are immutable (name, uid, and a session's sessionId and clusterId); a session's phase
 *   only moves along the state machine's edges. The uid is assigned on creation.
 * - The store's version comes back as `metadata.resourceVersion` (never stored). Given on a
 *   write (or as `ifVersion`), the write succeeds only if the record still has that version;
 *   0 means "only if absent".
 */
import { randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { ConditionFailedError, errorCode } from '../errors.js';
import type { StateStore, StoredRecord, Watch } from '../store/StateStore.js';
import {
  checkPolicyUpdate,
  safeParseFailoverPolicy,
  type FailoverPolicy,
} from './failoverPolicy.js';
import { API_V1, CURRENT_VERSION, withoutResourceVersion, type SchemaVersion } from './meta.js';
import {
  checkSessionCreate,
  checkSessionUpdate,
  safeParseStreamSession,
  type StreamSession,
} from './streamSession.js';
import {
  RecordValidationError,
  valueOrThrow,
  type RecordIssue,
  type Validated,
} from './validation.js';

export const POLICY_PREFIX = 'policies/';
export const SESSION_PREFIX = 'sessions/';

/** Writes that did not pin a version retry this many times when another writer got in first. */
const MAX_ATTEMPTS = 5;

export interface Stored<T> {
  /** The record as v2, with `metadata.resourceVersion` set to `version`. */
  record: T;
  version: number;
  /** The schema version the store holds it in (v1 until the next write rewrites it). */
  storedAs: SchemaVersion;
}

export type WriteOutcome = 'created' | 'updated' | 'unchanged';

export interface PutResult<T> extends Stored<T> {
  outcome: WriteOutcome;
}

export interface RecordWriteOptions {
  /** Write only if the record has this version now (0: only if absent). */
  ifVersion?: number;
}

export type RecordWatchEvent<T> =
  { type: 'put'; record: T; version: number } | { type: 'delete'; name: string };

/** A record in the store that does not validate: written by something other than a repository. */
export class InvalidStoredRecordError extends RecordValidationError {
  constructor(
    readonly key: string,
    issues: RecordIssue[],
  ) {
    super(
      issues.map((issue) => ({ path: issue.path, message: `${issue.message} (stored at ${key})` })),
      'invalid_stored_record',
    );
  }
}

interface Kind<T extends NamedRecord> {
  prefix: string;
  parse(data: unknown): Validated<T>;
  checkCreate(record: T): void;
  checkUpdate(previous: T, next: T): void;
}

interface NamedRecord {
  apiVersion: string;
  metadata: { name: string; uid?: string; resourceVersion?: number };
}

const POLICIES: Kind<FailoverPolicy> = {
  prefix: POLICY_PREFIX,
  parse: safeParseFailoverPolicy,
  checkCreate: () => undefined,
  checkUpdate: checkPolicyUpdate,
};

const SESSIONS: Kind<StreamSession> = {
  prefix: SESSION_PREFIX,
  parse: safeParseStreamSession,
  checkCreate: checkSessionCreate,
  checkUpdate: checkSessionUpdate,
};

export interface RecordRepositoryOptions {
  /** Makes uids for new records. @default crypto.randomUUID */
  newUid?: () => string;
}

export class RecordRepository {
  private readonly newUid: () => string;

  constructor(
    private readonly store: StateStore,
    options: RecordRepositoryOptions = {},
  ) {
    this.newUid = options.newUid ?? randomUUID;
  }

  // ---------------------------------------------------------------- policies

  getPolicy(name: string): Promise<Stored<FailoverPolicy> | undefined> {
    return this.get(POLICIES, name);
  }

  listPolicies(): Promise<Stored<FailoverPolicy>[]> {
    return this.list(POLICIES);
  }

  /**
   * Creates or replaces a policy given as data of either schema version (validated, defaults
   * filled in). Throws RecordValidationError, ImmutableFieldError or ConditionFailedError.
   */
  putPolicy(data: unknown, options: RecordWriteOptions = {}): Promise<PutResult<FailoverPolicy>> {
    return this.put(POLICIES, data, options);
  }

  deletePolicy(name: string, options: RecordWriteOptions = {}): Promise<boolean> {
    return this.store.delete(POLICY_PREFIX + name, options);
  }

  /** Every policy put and delete under the prefix, as validated records (invalid ones skipped). */
  watchPolicies(
    listener: (event: RecordWatchEvent<FailoverPolicy>) => void,
    onInvalid?: (error: InvalidStoredRecordError) => void,
  ): Promise<Watch> {
    return this.watch(POLICIES, listener, onInvalid);
  }

  // ---------------------------------------------------------------- sessions

  getSession(name: string): Promise<Stored<StreamSession> | undefined> {
    return this.get(SESSIONS, name);
  }

  listSessions(): Promise<Stored<StreamSession>[]> {
    return this.list(SESSIONS);
  }

  /**
   * Creates a session (phase Pending or Active) or replaces one: ids unchanged, phase along a
   * legal edge. Throws RecordValidationError, ImmutableFieldError, IllegalTransitionError or
   * ConditionFailedError.
   */
  putSession(data: unknown, options: RecordWriteOptions = {}): Promise<PutResult<StreamSession>> {
    return this.put(SESSIONS, data, options);
  }

  /**
   * Read, change, write back conditionally, again on a lost race: for changes computed from the
   * current record (`transitionSession(s, 'Failed')`). Resolves undefined when there is none.
   */
  async updateSession(
    name: string,
    change: (session: StreamSession) => StreamSession,
  ): Promise<PutResult<StreamSession> | undefined> {
    for (let attempt = 1; ; attempt++) {
      const current = await this.getSession(name);
      if (!current) return undefined;
      try {
        return await this.put(SESSIONS, change(current.record), { ifVersion: current.version });
      } catch (error) {
        if (errorCode(error) !== 'condition_failed' || attempt >= MAX_ATTEMPTS) throw error;
      }
    }
  }

  deleteSession(name: string, options: RecordWriteOptions = {}): Promise<boolean> {
    return this.store.delete(SESSION_PREFIX + name, options);
  }

  watchSessions(
    listener: (event: RecordWatchEvent<StreamSession>) => void,
    onInvalid?: (error: InvalidStoredRecordError) => void,
  ): Promise<Watch> {
    return this.watch(SESSIONS, listener, onInvalid);
  }

  // ---------------------------------------------------------------- shared

  private async get<T extends NamedRecord>(
    kind: Kind<T>,
    name: string,
  ): Promise<Stored<T> | undefined> {
    const stored = await this.store.get(kind.prefix + name);
    return stored === undefined ? undefined : decode(kind, stored);
  }

  private async list<T extends NamedRecord>(kind: Kind<T>): Promise<Stored<T>[]> {
    const records = await this.store.list(kind.prefix);
    return records
      .map((stored) => decode(kind, stored))
      .sort((a, b) => a.record.metadata.name.localeCompare(b.record.metadata.name));
  }

  private async put<T extends NamedRecord>(
    kind: Kind<T>,
    data: unknown,
    options: RecordWriteOptions,
  ): Promise<PutResult<T>> {
    const parsed = valueOrThrow(kind.parse(data));
    const pinned = options.ifVersion ?? parsed.metadata.resourceVersion;
    const key = kind.prefix + parsed.metadata.name;
    for (let attempt = 1; ; attempt++) {
      const current = await this.get(kind, parsed.metadata.name);
      if (pinned !== undefined && (current?.version ?? 0) !== pinned) {
        throw new ConditionFailedError(key);
      }
      const record = withoutResourceVersion(parsed);
      if (current) {
        const previous = withoutResourceVersion(current.record);
        kind.checkUpdate(previous, record);
        record.metadata.uid = previous.metadata.uid;
        if (current.storedAs === CURRENT_VERSION && isDeepStrictEqual(previous, record)) {
          return { ...current, outcome: 'unchanged' };
        }
      } else {
        kind.checkCreate(record);
        record.metadata.uid ??= this.newUid();
      }
      try {
        const version = await this.store.put(key, record, { ifVersion: current?.version ?? 0 });
        record.metadata.resourceVersion = version;
        return {
          record,
          version,
          storedAs: CURRENT_VERSION,
          outcome: current ? 'updated' : 'created',
        };
      } catch (error) {
        // A pinned write must not be retried: the caller's view is stale, they decide.
        if (errorCode(error) !== 'condition_failed' || pinned !== undefined) throw error;
        if (attempt >= MAX_ATTEMPTS) throw error;
      }
    }
  }

  private watch<T extends NamedRecord>(
    kind: Kind<T>,
    listener: (event: RecordWatchEvent<T>) => void,
    onInvalid?: (error: InvalidStoredRecordError) => void,
  ): Promise<Watch> {
    return this.store.watch(kind.prefix, (event) => {
      if (event.type === 'delete') {
        listener({ type: 'delete', name: event.key.slice(kind.prefix.length) });
        return;
      }
      let stored: Stored<T>;
      try {
        stored = decode(kind, event.record);
      } catch (error) {
        if (error instanceof InvalidStoredRecordError) return onInvalid?.(error);
        throw error;
      }
      listener({ type: 'put', record: stored.record, version: stored.version });
    });
  }
}

function decode<T extends NamedRecord>(kind: Kind<T>, stored: StoredRecord): Stored<T> {
  const parsed = kind.parse(stored.value);
  if (!parsed.ok) throw new InvalidStoredRecordError(stored.key, parsed.issues);
  const record = parsed.value;
  const name = stored.key.slice(kind.prefix.length);
  if (record.metadata.name !== name) {
    throw new InvalidStoredRecordError(stored.key, [
      { path: ['metadata', 'name'], message: `must be ${JSON.stringify(name)}, the key's name` },
    ]);
  }
  record.metadata.resourceVersion = stored.version;
  const apiVersion = (stored.value as { apiVersion?: unknown }).apiVersion;
  return {
    record,
    version: stored.version,
    storedAs: apiVersion === API_V1 ? 'v1' : 'v2',
  };
}
