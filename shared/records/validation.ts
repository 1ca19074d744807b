/**
 * Validation of records with the exact path of every problem, in one wording for all of them:
 * `spec.timeoutSeconds: must be ≤ 3600`, `spec.nodeRules.rules[0].when.count: must be ≥ 1`,
 * `spec.colour: unknown field`. Rule data embedded in a policy is checked by the rule engine's
 * own schemas, so its problems read the same way.
 */
import type { z } from 'zod';
import { StreamhealError } from '../errors.js';

export type IssuePath = (string | number)[];

export interface RecordIssue {
  /** From the root of the record, e.g. ['spec', 'timeoutSeconds']. */
  path: IssuePath;
  message: string;
}

/**
 * `['spec', 'nodeRules', 'rules', 0, 'when']` → `spec.nodeRules.rules[0].when`; a key that is
 * not a plain name is quoted: `metadata.annotations["streamheal.io/conversion-data"]`. The
 * root is `$`.
 */
export function formatPath(path: readonly (string | number)[]): string {
  if (path.length === 0) return '$';
  return path
    .map((part, i) => {
      if (typeof part === 'number') return `[${part}]`;
      if (!/^[A-Za-z_$][\w$]*$/.test(part)) return `[${JSON.stringify(part)}]`;
      return i === 0 ? part : `.${part}`;
    })
    .join('');
}

/** `spec.timeoutSeconds: must be ≤ 3600`. */
export function formatIssue(issue: RecordIssue): string {
  return `${formatPath(issue.path)}: ${issue.message}`;
}

/** The same issues under `prefix` (rule data checked on its own, then placed in a record). */
export function under(prefix: IssuePath, issues: readonly RecordIssue[]): RecordIssue[] {
  return issues.map((issue) => ({ path: [...prefix, ...issue.path], message: issue.message }));
}

/** A record that does not validate; `issues` lists every problem with its path. */
export class RecordValidationError extends StreamhealError {
  readonly issues: RecordIssue[];
  constructor(issues: RecordIssue[], code = 'invalid_record') {
    super(code, issues.map(formatIssue).join('; '));
    this.issues = issues;
  }
}

/** An update that would change a field that never changes once written (an id). */
export class ImmutableFieldError extends RecordValidationError {
  constructor(issues: RecordIssue[]) {
    super(issues, 'immutable_field');
  }
}

/** An update that moves a session's phase along an edge the state machine does not have. */
export class IllegalTransitionError extends RecordValidationError {
  constructor(issues: RecordIssue[]) {
    super(issues, 'illegal_transition');
  }
}

export type Validated<T> = { ok: true; value: T } | { ok: false; issues: RecordIssue[] };

/** The value, or RecordValidationError with every issue. */
export function valueOrThrow<T>(result: Validated<T>): T {
  if (!result.ok) throw new RecordValidationError(result.issues);
  return result.value;
}

/** An update changed `path` (an id) from `was` to `now`. */
export function immutable(path: IssuePath, was: unknown, now: unknown): RecordIssue {
  return {
    path,
    message: `is immutable (was ${JSON.stringify(was)}, the update has ${JSON.stringify(now)})`,
  };
}

/** Parses with the messages below; issues come in the schema's field order. */
export function validate<T>(schema: z.ZodType<T>, data: unknown): Validated<T> {
  const result = schema.safeParse(data, { error: message });
  if (result.success) return { ok: true, value: result.data };
  return { ok: false, issues: toIssues(result.error.issues) };
}

/** Turns zod issues into record issues: one per unknown key, paths without symbols. */
export function toIssues(issues: readonly z.core.$ZodIssue[]): RecordIssue[] {
  const out: RecordIssue[] = [];
  for (const issue of issues) {
    const path = issue.path.map((part) => (typeof part === 'symbol' ? String(part) : part));
    if (issue.code === 'unrecognized_keys') {
      // The exact path is the unknown key itself, not the object holding it.
      for (const key of issue.keys) out.push({ path: [...path, key], message: 'unknown field' });
    } else {
      out.push({ path, message: issue.message });
    }
  }
  return out;
}

/** Bounds and types in one wording; `undefined` keeps zod's message (and custom ones). */
function message(issue: z.core.$ZodRawIssue): string | undefined {
  switch (issue.code) {
    case 'too_big': {
      const max = String(issue.maximum);
      if (issue.origin === 'string') return `must be at most ${max} characters`;
      if (issue.origin === 'array') return `must have at most ${max} items`;
      return issue.inclusive === false ? `must be < ${max}` : `must be ≤ ${max}`;
    }
    case 'too_small': {
      const min = String(issue.minimum);
      if (issue.origin === 'string') {
        return issue.minimum === 1 ? 'must not be empty' : `must be at least ${min} characters`;
      }
      if (issue.origin === 'array') {
        return `must have at least ${min} item${issue.minimum === 1 ? '' : 's'}`;
      }
      return issue.inclusive === false ? `must be > ${min}` : `must be ≥ ${min}`;
    }
    case 'invalid_type':
      if (issue.input === undefined) return 'required';
      if (issue.expected === 'int') return `must be an integer, got ${describe(issue.input)}`;
      return `must be ${article(issue.expected)}, got ${describe(issue.input)}`;
    case 'invalid_value':
      return issue.values.length === 1
        ? `must be ${JSON.stringify(issue.values[0])}, got ${describe(issue.input)}`
        : `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}, got ${describe(issue.input)}`;
    case 'invalid_format':
      if (issue.format === 'datetime') {
        return `must be an ISO 8601 UTC date-time (2025-01-31T12:00:00Z), got ${describe(issue.input)}`;
      }
      return issue.format === 'regex' && issue.pattern
        ? `must match ${String(issue.pattern)}, got ${describe(issue.input)}`
        : `must be a valid ${issue.format}, got ${describe(issue.input)}`;
    case 'invalid_union': {
      // A discriminated union whose discriminator (its path) is missing or unknown.
      const { note, options, discriminator } = issue as {
        note?: string;
        options?: unknown[];
        discriminator?: string;
      };
      if (note !== 'No matching discriminator' || !options) return undefined;
      const input: unknown = issue.input;
      const value =
        discriminator !== undefined && typeof input === 'object' && input !== null
          ? (input as Record<string, unknown>)[discriminator]
          : input;
      const choices = options.map((v) => JSON.stringify(v)).join(', ');
      return value === undefined
        ? `required: one of ${choices}`
        : `must be one of ${choices}, got ${describe(value)}`;
    }
    default:
      return undefined;
  }
}

function article(expected: string): string {
  return /^[aeiou]/.test(expected) ? `an ${expected}` : `a ${expected}`;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') {
    const text = value.length > 40 ? `${value.slice(0, 37)}...` : value;
    return JSON.stringify(text);
  }
  return String(value);
}
