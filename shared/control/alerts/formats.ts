/**
 * The request each kind of target gets for one decision event. Pure: what to send, not sending.
 *
 * - webhook: our JSON (below), signed (signature.ts), with the event id in a header.
 * - slack: an incoming-webhook message, `{ text, blocks }` (text is the fallback and the
 *   notification line; blocks carry the same with the node and event).
 * - pagerduty: an Events API v2 enqueue body. Isolation opens an incident per node
 *   (`dedup_key: streamheal/<node>/isolated`) and reinstatement resolves it; every other event
 *   triggers with its own event id as `dedup_key`, so a retried delivery never pages twice.
 */
import type { BusEvent } from '../../bus/EventBus.js';
import { DecisionEvents } from '../../bus/controlEvents.js';
import { EVENT_ID_HEADER, signWebhook } from './signature.js';
import type { AlertTarget } from './targets.js';

export interface AlertRequest {
  url: string;
  headers: Record<string, string>;
  body: string;
}

/** The generic webhook's body. */
export interface WebhookPayload {
  type: 'streamheal.decision';
  version: 1;
  id: string;
  source: string;
  detailType: string;
  time: string;
  node?: string;
  message?: string;
  detail: Record<string, unknown>;
}

const USER_AGENT = 'streamheal-alerts/1';

export function webhookPayload(event: BusEvent): WebhookPayload {
  const detail = event.detail as Record<string, unknown>;
  return {
    type: 'streamheal.decision',
    version: 1,
    id: event.id,
    source: event.source,
    detailType: event['detail-type'],
    time: event.time,
    ...(typeof detail.node === 'string' ? { node: detail.node } : {}),
    ...(typeof detail.message === 'string' ? { message: detail.message } : {}),
    detail,
  };
}

export function slackMessage(event: BusEvent): { text: string; blocks: unknown[] } {
  const { node, message } = summaryOf(event);
  const text = `[streamheal] ${event['detail-type']}: ${message}`;
  return {
    text,
    blocks: [
      {
        type: 'section',
        text: {
          type: 'mrkdwn',
          text: `*${escapeSlack(event['detail-type'])}* · \`${escapeSlack(node)}\`\n${escapeSlack(message)}`,
        },
      },
      {
        type: 'context',
        elements: [{ type: 'mrkdwn', text: `streamheal · ${event.time} · event ${event.id}` }],
      },
    ],
  };
}

export type PagerDutySeverity = 'critical' | 'error' | 'warning' | 'info';

const SEVERITY: Record<string, PagerDutySeverity> = {
  [DecisionEvents.nodeDeclaredLost]: 'critical',
  [DecisionEvents.isolationSuppressed]: 'critical',
  [DecisionEvents.nodeIsolated]: 'error',
  [DecisionEvents.migrationFailed]: 'error',
};

/** PagerDuty Events API v2 enqueue body (https://developer.pagerduty.com/api-reference/). */
export function pagerDutyEvent(event: BusEvent, routingKey: string): Record<string, unknown> {
  const { node, message } = summaryOf(event);
  const detailType = event['detail-type'];
  if (detailType === DecisionEvents.nodeReinstated) {
    return { routing_key: routingKey, event_action: 'resolve', dedup_key: isolationKey(node) };
  }
  const detail = event.detail as Record<string, unknown>;
  return {
    routing_key: routingKey,
    event_action: 'trigger',
    dedup_key:
      detailType === DecisionEvents.nodeIsolated
        ? isolationKey(node)
        : `streamheal/event/${event.id}`,
    payload: {
      summary: `${detailType}: ${message}`.slice(0, 1024),
      source: node,
      severity: SEVERITY[detailType] ?? 'info',
      timestamp: typeof detail.at === 'string' ? detail.at : event.time,
      component: 'gateway',
      group: 'streamheal',
      class: detailType,
      custom_details: { ...detail, eventId: event.id },
    },
    client: 'streamheal',
  };
}

function isolationKey(node: string): string {
  return `streamheal/${node}/isolated`.slice(0, 255);
}

/** The request for one attempt (webhooks are signed at `nowMs`, per attempt). */
export function alertRequest(target: AlertTarget, event: BusEvent, nowMs: number): AlertRequest {
  const base = { 'content-type': 'application/json', 'user-agent': USER_AGENT };
  switch (target.type) {
    case 'webhook': {
      const body = JSON.stringify(webhookPayload(event));
      return {
        url: target.url,
        headers: {
          ...base,
          [EVENT_ID_HEADER]: event.id,
          ...signWebhook(target.secret, body, nowMs),
        },
        body,
      };
    }
    case 'slack':
      return { url: target.url, headers: base, body: JSON.stringify(slackMessage(event)) };
    case 'pagerduty':
      return {
        url: target.url,
        headers: base,
        body: JSON.stringify(pagerDutyEvent(event, target.routingKey)),
      };
  }
}

function summaryOf(event: BusEvent): { node: string; message: string } {
  const detail = event.detail as Record<string, unknown>;
  const node = typeof detail.node === 'string' ? detail.node : (event.resources?.[0] ?? 'unknown');
  const message = typeof detail.message === 'string' ? detail.message : event['detail-type'];
  return { node, message };
}

/** Slack's three control characters in mrkdwn. */
function escapeSlack(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
