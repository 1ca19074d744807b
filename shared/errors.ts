/**
 * Errors carry a stable `code` (a brand) so callers can test them across package copies and
 * process boundaries, where `instanceof` fails.
 */
export class StreamhealError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** The state store cannot be reached or did not answer in time. Retry later. */
export class StoreUnavailableError extends StreamhealError {
  constructor(message = 'state store unavailable', options?: ErrorOptions) {
    super('store_unavailable', message, options);
  }
}

/** A conditional write found a different version than expected. */
export class ConditionFailedError extends StreamhealError {
  constructor(key: string) {
    super('condition_failed', `condition failed for ${key}`);
  }
}

/** A lease expired or was revoked; whatever was attached to it is gone. */
export class LeaseExpiredError extends StreamhealError {
  constructor(leaseId: string) {
    super('lease_expired', `lease ${leaseId} expired`);
  }
}

export function errorCode(error: unknown): string | undefined {
  return typeof error === 'object' &&
    error !== null &&
    typeof (error as { code?: unknown }).code === 'string'
    ? (error as { code: string }).code
    : undefined;
}
