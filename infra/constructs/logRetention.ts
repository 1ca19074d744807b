import type * as logs from 'aws-cdk-lib/aws-logs';
import { LOG_RETENTION_DAYS } from '../defaults.js';

/** The CloudWatch Logs retention for `days`: the smallest accepted value that keeps at least that long. */
export function logRetention(days: number): logs.RetentionDays {
  const accepted = LOG_RETENTION_DAYS.find((value) => value >= days);
  if (accepted === undefined) {
    throw new Error(`log retention of ${days} days is longer than CloudWatch Logs allows (3653)`);
  }
  return accepted as logs.RetentionDays;
}
