import type { Duration } from 'aws-cdk-lib';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import type { Construct } from 'constructs';
import { acknowledge } from '../nag.js';

/**
 * A dead-letter queue for events a target could not take (EventBridge target DLQ, Lambda
 * on-failure destination): SSE-SQS, TLS only, kept `retention` for inspection and redrive.
 */
export function deadLetterQueue(scope: Construct, id: string, retention: Duration): sqs.Queue {
  const queue = new sqs.Queue(scope, id, {
    retentionPeriod: retention,
    encryption: sqs.QueueEncryption.SQS_MANAGED,
    enforceSSL: true,
  });
  acknowledge(
    queue,
    'AwsSolutions-SQS3',
    'This queue is itself the dead-letter queue of EventBridge targets and Lambda asynchronous ' +
      'invocations (cdk-nag only recognizes SQS redrive policies); nothing consumes it ' +
      'automatically, so a further DLQ would never receive anything.',
  );
  return queue;
}
