/**
 * Channel logs on DynamoDB: the `channels` table holds one head item per channel (the position
 * counter), the `messages` table one item per position (channel, pos).
 *
 * Append is two writes: UpdateItem ADD on the head assigns the position, then a conditional
 * PutItem stores the message. Between them (or forever, if the appender dies or its put fails)
 * the position is a *hole*: assigned, no item. Readers never skip a hole silently:
 * - a reader that meets a hole waits for it; after `holeGraceMs` (measured from the moment this
 *   process first saw it) it *gives the position up* with a conditional put of a tombstone
 *   (`attribute_not_exists(pos)`). Exactly one of the message and the tombstone lands, so every
 *   reader everywhere sees the same outcome; a late appender's put fails and its caller gets
 *   StoreUnavailableError (publish again).
 * - a tombstone reads as lost history: watchers get `{ type: 'lost', oldest: next }`, and a
 *   read that stands right before tombstones reports `oldest` past them; a read never returns
 *   messages on both sides of a tombstone in one page.
 * - an appender whose put fails tombstones its own position at once, so readers do not wait.
 *
 * History bounds are logical: a read computes `oldest` from the count bound (latest - maxCount),
 * the head's `floor` and the message times (age bound, a prefix: the walk stops at the first
 * message young enough). Trimmed items are not deleted by the store; DynamoDB TTL (free) does it
 * later. A per-process hint remembers the oldest held message, so a steady read costs no walk.
 *
 * Watches poll: one loop per process reads the heads of every watched channel every
 * `pollIntervalMs` (BatchGetItem, 100 heads a call); a channel whose head is ahead of its
 * slowest watcher in this process then reads its new messages (one Query) and delivers them to
 * each of its watchers in order. A local append wakes its channel at once. Cost and latency are
 * in docs/dynamodb.md.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  BatchGetItemCommand,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
  ScanCommand,
  UpdateItemCommand,
  type AttributeValue,
  type BatchGetItemCommandOutput,
  type GetItemCommandOutput,
  type QueryCommandOutput,
  type ScanCommandOutput,
  type UpdateItemCommandOutput,
} from '@aws-sdk/client-dynamodb';
import { fullJitterBackoff } from '../../backoff.js';
import { StoreUnavailableError, StreamhealError } from '../../errors.js';
import { checkChannel, checkLimit, checkPosition } from '../checks.js';
import type {
  ChannelMessage,
  ChannelSummary,
  ChannelWatch,
  ChannelWatchEvent,
  HistoryLimits,
  HistoryPage,
} from '../StateStore.js';
import { isConditionFailure, type DynamoCaller } from './client.js';
import { A, type DynamoTableNames } from './schema.js';
import { encodeJson, type StorePartOptions } from './storePart.js';

export interface ChannelLogOptions extends StorePartOptions {
  tables: Pick<DynamoTableNames, 'channels' | 'messages'>;
  limits: HistoryLimits;
  pollIntervalMs: number;
  /** Messages per Query when a watcher catches up. */
  pageSize: number;
  holeGraceMs: number;
  /** Strongly consistent reads for watch polls (twice the read cost of eventual ones). */
  consistentPolls: boolean;
  /** Added to a message's age bound for its TTL attribute (TTL only collects garbage). */
  ttlMarginMs: number;
}

type Item = Record<string, AttributeValue>;

interface Head {
  latest: number;
  floor: number;
}

/** A position's content: a message, or nothing when the position was given up (tombstone). */
interface Entry {
  position: number;
  message?: ChannelMessage;
}

interface Watcher {
  cursor: number;
  listener: (event: ChannelWatchEvent) => void;
  closed: boolean;
}

/** DynamoDB's item limit; a message is refused before it takes a position if it cannot fit. */
const MAX_ITEM_BYTES = 400 * 1024;
/** Attribute names and numbers of a message item, beyond channel, data and trace. */
const ITEM_OVERHEAD_BYTES = 200;
/** DynamoDB allows 2048 bytes for a partition key; keep channel names well inside. */
const MAX_CHANNEL_BYTES = 1024;
/** A floor found by a walk is written back to the head once it saves others this many items. */
const FLOOR_STEP = 32;
/** How often a waiting reader looks for the message of a hole. */
const HOLE_CHECK_MS = 25;
const WALK_FIRST_PAGE = 8;
const WALK_MAX_PAGE = 1_000;
const SUMMARY_CONCURRENCY = 8;
/** The per-channel caches start over past this many channels (they only save reads). */
const MAX_CACHED_CHANNELS = 10_000;
/** BatchGetItem reads at most 100 items per call. */
const BATCH_GET_MAX = 100;
const HEAD_CONCURRENCY = 4;
/** While DynamoDB fails, watch polls back off up to this (the first one after it is back delivers). */
const POLL_BACKOFF_CAP_MS = 2_000;
const BATCH_ATTEMPTS = 5;
const UNPROCESSED_BACKOFF = { baseMs: 25, capMs: 500, jitter: 0, floorMs: 5 };

export class DynamoChannelLog {
  private readonly caller: DynamoCaller;
  private readonly limits: HistoryLimits;
  /** Oldest held message as last seen, per channel: a read needs no walk while it is young. */
  private readonly oldestHints = new Map<string, { position: number; time: number }>();
  /** Highest position known trimmed, per channel (facts only grow). */
  private readonly trimmedThrough = new Map<string, number>();
  /** When this process first saw each hole (`channel \0 position`). */
  private readonly holes = new Map<string, number>();
  private readonly pollers = new Map<string, ChannelPoller>();
  private headTimer: NodeJS.Timeout | undefined;
  private headLoopRunning = false;
  private headFailures = 0;
  private closed = false;

  constructor(readonly options: ChannelLogOptions) {
    this.caller = options.caller;
    this.limits = options.limits;
  }

  // ---------------------------------------------------------------- append

  async append(
    channel: string,
    data: unknown,
    trace?: Record<string, string>,
  ): Promise<ChannelMessage> {
    checkChannel(channel, MAX_CHANNEL_BYTES);
    const encodedData = data === undefined ? undefined : encodeJson(data, 'data');
    const encodedTrace = trace === undefined ? undefined : encodeJson(trace, 'trace');
    const size =
      ITEM_OVERHEAD_BYTES +
      Buffer.byteLength(channel) +
      (encodedData === undefined ? 0 : Buffer.byteLength(encodedData)) +
      (encodedTrace === undefined ? 0 : Buffer.byteLength(encodedTrace));
    if (size > MAX_ITEM_BYTES) {
      // Refused before the counter moves: a message that cannot be stored must not leave a hole.
      throw new StreamhealError(
        'message_too_large',
        `message on ${channel} needs about ${size} bytes; a DynamoDB item holds ${MAX_ITEM_BYTES}`,
      );
    }
    const appendId = randomUUID();
    const position = await this.nextPosition(channel, appendId);
    const time = this.options.now();
    const item: Item = {
      [A.channel]: { S: channel },
      [A.pos]: { N: String(position) },
      [A.time]: { N: String(time) },
      [A.appendId]: { S: appendId },
      [A.ttl]: { N: String(this.ttlFor(time)) },
    };
    if (encodedData !== undefined) item[A.data] = { S: encodedData };
    if (encodedTrace !== undefined) item[A.trace] = { S: encodedTrace };
    const message: ChannelMessage =
      trace === undefined
        ? { channel, position, data, time }
        : { channel, position, data, time, trace };
    try {
      await this.caller.send(
        new PutItemCommand({
          TableName: this.options.tables.messages,
          Item: item,
          // A retry of our own put finds our append id; anything else there is a tombstone.
          ConditionExpression: 'attribute_not_exists(#pos) OR #aid = :aid',
          ExpressionAttributeNames: { '#pos': A.pos, '#aid': A.appendId },
          ExpressionAttributeValues: { ':aid': { S: appendId } },
        }),
        `append to ${channel}`,
      );
    } catch (error) {
      if (isConditionFailure(error)) {
        throw new StoreUnavailableError(
          `append to ${channel}: position ${position} was given up by readers before its ` +
            'message was stored; publish again',
        );
      }
      // Settle the position now (readers need not wait out the grace), and learn whether the
      // put landed after all when its answer was lost.
      const outcome = await this.giveUp(channel, position, 'append').catch(() => undefined);
      if (outcome?.appendId === appendId) return this.appended(channel, message);
      throw error;
    }
    return this.appended(channel, message);
  }

  private appended(channel: string, message: ChannelMessage): ChannelMessage {
    this.pollers.get(channel)?.wake();
    return message;
  }

  /**
   * ADD 1 on the head. The append id makes an SDK retry of an applied increment harmless, unless
   * another append got in between: then the retry takes a second position and the first one
   * becomes a hole that readers give up (docs/dynamodb.md, "Appends, positions and holes").
   */
  private async nextPosition(channel: string, appendId: string): Promise<number> {
    try {
      const out = await this.caller.send<UpdateItemCommandOutput>(
        new UpdateItemCommand({
          TableName: this.options.tables.channels,
          Key: { [A.channel]: { S: channel } },
          UpdateExpression:
            'ADD #latest :one SET #aid = :aid, #created = if_not_exists(#created, :now)',
          ConditionExpression: 'attribute_not_exists(#aid) OR #aid <> :aid',
          ExpressionAttributeNames: {
            '#latest': A.latest,
            '#aid': A.appendId,
            '#created': A.created,
          },
          ExpressionAttributeValues: {
            ':one': { N: '1' },
            ':aid': { S: appendId },
            ':now': { N: String(this.options.now()) },
          },
          ReturnValues: 'UPDATED_NEW',
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
        `append to ${channel}`,
      );
      return Number(out.Attributes?.[A.latest]?.N);
    } catch (error) {
      if (!isConditionFailure(error)) throw error;
      // An earlier attempt of this very call was applied and its answer lost.
      const head = (error.Item as Item | undefined) ?? (await this.headItem(channel, true));
      if (head?.[A.appendId]?.S === appendId) return Number(head[A.latest]?.N);
      throw new StoreUnavailableError(
        `append to ${channel}: the position counter moved but its answer was lost; publish again`,
      );
    }
  }

  // ---------------------------------------------------------------- read

  async read(channel: string, after: number, limit: number): Promise<HistoryPage> {
    checkPosition(after);
    checkLimit(limit);
    checkChannel(channel, MAX_CHANNEL_BYTES);
    for (;;) {
      const head = await this.head(channel, true);
      if (head === undefined) return { messages: [], oldest: 1, latest: 0 };
      let oldest = await this.oldest(channel, head);
      if (limit === 0 || after >= head.latest) {
        return { messages: [], oldest, latest: head.latest };
      }
      const from = Math.max(after, oldest - 1);
      const { entries, holeAt } = await this.entries(channel, from, limit, head.latest, true);
      let i = 0;
      // Given-up positions right where the reader stands read like the start of history.
      while (i < entries.length && entries[i]?.message === undefined) i++;
      if (i > 0) oldest = (entries[i - 1] as Entry).position + 1;
      const messages: ChannelMessage[] = [];
      for (; i < entries.length; i++) {
        const message = (entries[i] as Entry).message;
        if (message === undefined) break;
        messages.push(message);
      }
      if (entries.length === 0 && holeAt === from + 1) {
        // The next position is assigned but not stored yet: wait for it or give it up.
        await this.settleHole(channel, holeAt, true);
        continue;
      }
      return { messages, oldest, latest: head.latest };
    }
  }

  async channels(): Promise<ChannelSummary[]> {
    const heads: Array<{ channel: string; head: Head }> = [];
    let start: Item | undefined;
    do {
      const out: ScanCommandOutput = await this.caller.send<ScanCommandOutput>(
        new ScanCommand({
          TableName: this.options.tables.channels,
          ConsistentRead: true,
          ProjectionExpression: '#c, #latest, #floor',
          ExpressionAttributeNames: { '#c': A.channel, '#latest': A.latest, '#floor': A.floor },
          ExclusiveStartKey: start,
        }),
        'list channels',
      );
      for (const item of out.Items ?? []) {
        const head = toHead(item);
        const channel = item[A.channel]?.S;
        if (channel !== undefined && head.latest > 0) heads.push({ channel, head });
      }
      start = out.LastEvaluatedKey;
    } while (start !== undefined);
    const summaries: ChannelSummary[] = new Array(heads.length);
    let next = 0;
    const worker = async () => {
      while (next < heads.length) {
        const index = next++;
        const { channel, head } = heads[index] as { channel: string; head: Head };
        const oldest = await this.oldest(channel, head);
        summaries[index] = { channel, latest: head.latest, held: head.latest - oldest + 1 };
      }
    };
    await Promise.all(Array.from({ length: SUMMARY_CONCURRENCY }, worker));
    return summaries;
  }

  // ---------------------------------------------------------------- watch

  async watchChannel(
    channel: string,
    after: number | undefined,
    listener: (event: ChannelWatchEvent) => void,
  ): Promise<ChannelWatch> {
    checkChannel(channel, MAX_CHANNEL_BYTES);
    if (after !== undefined) checkPosition(after);
    const latest = (await this.head(channel, true))?.latest ?? 0;
    if (after !== undefined && after > latest) {
      throw new StreamhealError(
        'position_from_future',
        `position ${after} on ${channel} is ahead of the latest position ${latest}`,
      );
    }
    if (this.closed) throw new StoreUnavailableError('DynamoDB store closed');
    const startedAfter = after ?? latest;
    const watcher: Watcher = { cursor: startedAfter, listener, closed: false };
    let poller = this.pollers.get(channel);
    if (poller === undefined) {
      poller = new ChannelPoller(this, channel);
      this.pollers.set(channel, poller);
      this.startHeadLoop();
    }
    poller.add(watcher);
    const owner = poller;
    return {
      startedAfter,
      close: () => {
        watcher.closed = true;
        owner.remove(watcher);
      },
    };
  }

  /** One poll for a channel's watchers; true when there is more to read right away. */
  async poll(channel: string, watchers: Set<Watcher>, known?: Head): Promise<boolean> {
    const head = known ?? (await this.head(channel, this.options.consistentPolls));
    if (head === undefined) return false;
    const slowest = () => {
      let min = Infinity;
      for (const watcher of watchers) if (!watcher.closed) min = Math.min(min, watcher.cursor);
      return min;
    };
    if (head.latest <= slowest()) return false;
    const oldest = await this.oldest(channel, head);
    for (const watcher of watchers) {
      if (watcher.cursor < oldest - 1) {
        watcher.cursor = oldest - 1;
        this.emit(watcher, { type: 'lost', oldest });
      }
    }
    const from = slowest();
    if (head.latest <= from) return false;
    const pageSize = this.options.pageSize;
    const { entries, holeAt } = await this.entries(
      channel,
      from,
      pageSize,
      head.latest,
      this.options.consistentPolls,
    );
    this.deliver(watchers, entries);
    if (holeAt !== undefined) return this.settleHole(channel, holeAt, false);
    return entries.length === pageSize;
  }

  private deliver(watchers: Set<Watcher>, entries: Entry[]): void {
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i] as Entry;
      const message = entry.message;
      if (message !== undefined) {
        for (const watcher of watchers) {
          if (watcher.cursor !== entry.position - 1) continue;
          watcher.cursor = entry.position;
          this.emit(watcher, { type: 'message', message });
        }
        continue;
      }
      // A run of given-up positions: one `lost` saying where messages continue.
      let end = i;
      while (end + 1 < entries.length && entries[end + 1]?.message === undefined) end++;
      const next = (entries[end] as Entry).position + 1;
      for (const watcher of watchers) {
        if (watcher.cursor !== entry.position - 1) continue;
        watcher.cursor = next - 1;
        this.emit(watcher, { type: 'lost', oldest: next });
      }
      i = end;
    }
  }

  private emit(watcher: Watcher, event: ChannelWatchEvent): void {
    if (watcher.closed) return;
    try {
      watcher.listener(event);
    } catch (error) {
      this.options.onListenerError(error);
    }
  }

  forgetPoller(channel: string, poller: ChannelPoller): void {
    if (this.pollers.get(channel) === poller) this.pollers.delete(channel);
  }

  close(): void {
    this.closed = true;
    for (const poller of this.pollers.values()) poller.stop();
    this.pollers.clear();
    if (this.headTimer !== undefined) clearTimeout(this.headTimer);
    this.headTimer = undefined;
  }

  // ---------------------------------------------------------------- head loop

  private startHeadLoop(): void {
    if (this.headTimer === undefined && !this.headLoopRunning && !this.closed) {
      this.scheduleHeads(this.options.pollIntervalMs);
    }
  }

  private scheduleHeads(delay: number): void {
    this.headTimer = setTimeout(() => {
      this.headTimer = undefined;
      void this.pollHeads();
    }, delay);
    this.headTimer.unref();
  }

  /**
   * One tick for every watched channel: their heads in BatchGetItem calls of 100, then a
   * message read only for the channels that moved. While DynamoDB fails, ticks back off.
   */
  private async pollHeads(): Promise<void> {
    if (this.pollers.size === 0 || this.closed) return;
    this.headLoopRunning = true;
    const interval = this.options.pollIntervalMs;
    let delay = interval;
    try {
      const channels = [...this.pollers.keys()];
      const heads = await this.batchHeads(channels);
      for (const channel of channels) {
        const head = heads.get(channel);
        if (head !== undefined) this.pollers.get(channel)?.offer(head);
      }
      this.headFailures = 0;
    } catch (error) {
      this.headFailures++;
      delay = fullJitterBackoff(this.headFailures - 1, {
        baseMs: Math.max(interval, 50),
        capMs: POLL_BACKOFF_CAP_MS,
        jitter: 0,
        floorMs: interval,
      });
      if (!this.closed) this.options.onPollError('heads', error);
    } finally {
      this.headLoopRunning = false;
    }
    if (this.pollers.size > 0 && !this.closed) this.scheduleHeads(delay);
  }

  private async batchHeads(channels: string[]): Promise<Map<string, Head>> {
    const heads = new Map<string, Head>();
    const table = this.options.tables.channels;
    const chunks: string[][] = [];
    for (let i = 0; i < channels.length; i += BATCH_GET_MAX) {
      chunks.push(channels.slice(i, i + BATCH_GET_MAX));
    }
    let next = 0;
    const worker = async () => {
      while (next < chunks.length) {
        let keys: Item[] = (chunks[next++] as string[]).map((channel) => ({
          [A.channel]: { S: channel },
        }));
        for (let attempt = 0; keys.length > 0; attempt++) {
          if (attempt >= BATCH_ATTEMPTS) {
            throw new StoreUnavailableError('DynamoDB kept leaving channel heads unprocessed');
          }
          if (attempt > 0) await sleep(fullJitterBackoff(attempt - 1, UNPROCESSED_BACKOFF));
          const out = await this.caller.send<BatchGetItemCommandOutput>(
            new BatchGetItemCommand({
              RequestItems: {
                [table]: {
                  Keys: keys,
                  ConsistentRead: this.options.consistentPolls,
                  ProjectionExpression: '#c, #latest, #floor',
                  ExpressionAttributeNames: {
                    '#c': A.channel,
                    '#latest': A.latest,
                    '#floor': A.floor,
                  },
                },
              },
            }),
            'poll channel heads',
          );
          for (const item of out.Responses?.[table] ?? []) {
            const channel = item[A.channel]?.S;
            if (channel !== undefined) heads.set(channel, toHead(item));
          }
          keys = out.UnprocessedKeys?.[table]?.Keys ?? [];
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(HEAD_CONCURRENCY, chunks.length) }, worker));
    return heads;
  }

  // ---------------------------------------------------------------- internals

  private async headItem(channel: string, consistent: boolean): Promise<Item | undefined> {
    const out = await this.caller.send<GetItemCommandOutput>(
      new GetItemCommand({
        TableName: this.options.tables.channels,
        Key: { [A.channel]: { S: channel } },
        ConsistentRead: consistent,
      }),
      `read the head of ${channel}`,
    );
    return out.Item;
  }

  private async head(channel: string, consistent: boolean): Promise<Head | undefined> {
    const item = await this.headItem(channel, consistent);
    return item === undefined ? undefined : toHead(item);
  }

  /**
   * Oldest position held: after the count bound and the floor, the first position whose message
   * is young enough, tombstones at the front counting as trimmed. A position with no item yet
   * (a hole) stops the walk: it is held until it is settled.
   */
  private async oldest(channel: string, head: Head): Promise<number> {
    const cutoff = this.options.now() - this.limits.maxAgeMs;
    let trimmed = Math.max(
      head.floor,
      head.latest - this.limits.maxCount,
      this.trimmedThrough.get(channel) ?? 0,
    );
    const hint = this.oldestHints.get(channel);
    if (hint !== undefined && hint.position > trimmed) {
      if (hint.time >= cutoff) return Math.min(hint.position, head.latest + 1);
      trimmed = hint.position;
    }
    let limit = WALK_FIRST_PAGE;
    walk: while (trimmed < head.latest) {
      const out: QueryCommandOutput = await this.caller.send<QueryCommandOutput>(
        new QueryCommand({
          TableName: this.options.tables.messages,
          KeyConditionExpression: '#c = :c AND #pos > :from',
          ProjectionExpression: '#pos, #t, #tomb',
          ExpressionAttributeNames: {
            '#c': A.channel,
            '#pos': A.pos,
            '#t': A.time,
            '#tomb': A.tombstone,
          },
          ExpressionAttributeValues: { ':c': { S: channel }, ':from': { N: String(trimmed) } },
          ConsistentRead: true,
          Limit: limit,
        }),
        `read the history bounds of ${channel}`,
      );
      for (const item of out.Items ?? []) {
        const position = Number(item[A.pos]?.N);
        const time = Number(item[A.time]?.N);
        if (item[A.tombstone]?.BOOL === true || time < cutoff) {
          trimmed = position;
          continue;
        }
        if (position === trimmed + 1) {
          if (this.oldestHints.size >= MAX_CACHED_CHANNELS) this.oldestHints.clear();
          this.oldestHints.set(channel, { position, time });
        }
        break walk;
      }
      if (out.LastEvaluatedKey === undefined) break;
      limit = Math.min(limit * 4, WALK_MAX_PAGE);
    }
    this.noteTrimmed(channel, head, trimmed);
    return Math.min(trimmed + 1, head.latest + 1);
  }

  private noteTrimmed(channel: string, head: Head, trimmed: number): void {
    if (trimmed > (this.trimmedThrough.get(channel) ?? 0)) {
      if (this.trimmedThrough.size >= MAX_CACHED_CHANNELS) this.trimmedThrough.clear();
      this.trimmedThrough.set(channel, trimmed);
    }
    const derivable = Math.max(head.floor, head.latest - this.limits.maxCount);
    if (trimmed - derivable < FLOOR_STEP) return;
    head.floor = trimmed;
    const write = this.caller
      .send(
        new UpdateItemCommand({
          TableName: this.options.tables.channels,
          Key: { [A.channel]: { S: channel } },
          UpdateExpression: 'SET #floor = :floor',
          ConditionExpression: 'attribute_not_exists(#floor) OR #floor < :floor',
          ExpressionAttributeNames: { '#floor': A.floor },
          ExpressionAttributeValues: { ':floor': { N: String(trimmed) } },
        }),
        `record the history floor of ${channel}`,
      )
      .catch(() => undefined);
    this.options.background(write);
  }

  /**
   * Entries after `after`, contiguous, at most `limit`. `holeAt` names the first position that
   * is assigned (<= latest) but has no item, when that is what stopped the page.
   */
  private async entries(
    channel: string,
    after: number,
    limit: number,
    latest: number,
    consistent: boolean,
  ): Promise<{ entries: Entry[]; holeAt?: number }> {
    if (limit <= 0 || after >= latest) return { entries: [] };
    const out = await this.caller.send<QueryCommandOutput>(
      new QueryCommand({
        TableName: this.options.tables.messages,
        KeyConditionExpression: '#c = :c AND #pos > :after',
        ExpressionAttributeNames: { '#c': A.channel, '#pos': A.pos },
        ExpressionAttributeValues: { ':c': { S: channel }, ':after': { N: String(after) } },
        ConsistentRead: consistent,
        Limit: Math.min(limit, latest - after),
      }),
      `read ${channel}`,
    );
    const entries: Entry[] = [];
    let expected = after + 1;
    let gap = false;
    for (const item of out.Items ?? []) {
      const position = Number(item[A.pos]?.N);
      if (position !== expected) {
        gap = true;
        break;
      }
      entries.push(toEntry(channel, item));
      if (this.holes.size > 0) this.holes.delete(holeKey(channel, position));
      expected++;
      if (entries.length === limit) break;
    }
    const stoppedByMissing = gap || out.LastEvaluatedKey === undefined;
    return entries.length < limit && stoppedByMissing && expected <= latest
      ? { entries, holeAt: expected }
      : { entries };
  }

  /**
   * A hole: wait (`wait`) or just check the clock, and give the position up once it has been
   * missing for the grace period. True when the position is settled (message or tombstone).
   */
  private async settleHole(channel: string, position: number, wait: boolean): Promise<boolean> {
    const key = holeKey(channel, position);
    let first = this.holes.get(key);
    if (first === undefined) {
      first = this.options.now();
      this.pruneHoles(first);
      this.holes.set(key, first);
    }
    for (;;) {
      const waited = this.options.now() - first;
      if (waited >= this.options.holeGraceMs) {
        await this.giveUp(channel, position, 'reader');
        this.holes.delete(key);
        return true;
      }
      if (!wait) return false;
      await sleep(Math.min(HOLE_CHECK_MS, this.options.holeGraceMs - waited));
      if (this.closed) throw new StoreUnavailableError('DynamoDB store closed');
      const out = await this.caller.send<GetItemCommandOutput>(
        new GetItemCommand({
          TableName: this.options.tables.messages,
          Key: { [A.channel]: { S: channel }, [A.pos]: { N: String(position) } },
          ProjectionExpression: '#pos',
          ExpressionAttributeNames: { '#pos': A.pos },
          ConsistentRead: true,
        }),
        `read ${channel}`,
      );
      if (out.Item !== undefined) {
        this.holes.delete(key);
        return true;
      }
    }
  }

  private pruneHoles(now: number): void {
    if (this.holes.size < 1_000) return;
    for (const [key, seen] of this.holes) {
      if (now - seen > 10 * this.options.holeGraceMs) this.holes.delete(key);
    }
  }

  /**
   * Puts a tombstone where no item is. Returns what holds the position now: our tombstone, or
   * (when the put lost) the item that got there first, e.g. the message after all.
   */
  private async giveUp(
    channel: string,
    position: number,
    by: 'reader' | 'append',
  ): Promise<{ tombstone: boolean; appendId?: string }> {
    const time = this.options.now();
    try {
      await this.caller.send(
        new PutItemCommand({
          TableName: this.options.tables.messages,
          Item: {
            [A.channel]: { S: channel },
            [A.pos]: { N: String(position) },
            [A.time]: { N: String(time) },
            [A.tombstone]: { BOOL: true },
            [A.ttl]: { N: String(this.ttlFor(time)) },
          },
          ConditionExpression: 'attribute_not_exists(#pos)',
          ExpressionAttributeNames: { '#pos': A.pos },
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
        `give up position ${position} of ${channel} (${by})`,
      );
      return { tombstone: true };
    } catch (error) {
      if (!isConditionFailure(error)) throw error;
      let item = error.Item as Item | undefined;
      if (item === undefined) {
        const out = await this.caller.send<GetItemCommandOutput>(
          new GetItemCommand({
            TableName: this.options.tables.messages,
            Key: { [A.channel]: { S: channel }, [A.pos]: { N: String(position) } },
            ConsistentRead: true,
          }),
          `read ${channel}`,
        );
        item = out.Item;
      }
      const appendId = item?.[A.appendId]?.S;
      return appendId === undefined
        ? { tombstone: item?.[A.tombstone]?.BOOL === true }
        : { tombstone: false, appendId };
    }
  }

  private ttlFor(time: number): number {
    return Math.ceil((time + this.limits.maxAgeMs + this.options.ttlMarginMs) / 1000);
  }
}

/**
 * The watchers of one channel in this process. The store's head loop offers it the channel's
 * head on every tick; it reads messages only when the head is ahead of its slowest watcher, and
 * right away when woken (a new watcher, a local append).
 */
class ChannelPoller {
  private readonly watchers = new Set<Watcher>();
  private running = false;
  private again = false;
  private stopped = false;

  constructor(
    private readonly log: DynamoChannelLog,
    private readonly channel: string,
  ) {}

  add(watcher: Watcher): void {
    this.watchers.add(watcher);
    this.wake();
  }

  remove(watcher: Watcher): void {
    this.watchers.delete(watcher);
    if (this.watchers.size === 0) {
      this.stop();
      this.log.forgetPoller(this.channel, this);
    }
  }

  /** A head read by the head loop: poll with it if there is something to deliver. */
  offer(head: Head): void {
    let slowest = Infinity;
    for (const watcher of this.watchers) slowest = Math.min(slowest, watcher.cursor);
    if (head.latest > slowest) this.wake(head);
  }

  /** Poll now (or right after the poll in flight). */
  wake(head?: Head): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    void this.run(head);
  }

  stop(): void {
    this.stopped = true;
    for (const watcher of this.watchers) watcher.closed = true;
  }

  private async run(head: Head | undefined): Promise<void> {
    this.running = true;
    let more = false;
    let failed = false;
    try {
      more = await this.log.poll(this.channel, this.watchers, head);
    } catch (error) {
      // Watchers keep their positions; the next tick of the head loop tries again.
      failed = true;
      if (!this.stopped) this.log.options.onPollError(this.channel, error);
    } finally {
      this.running = false;
    }
    const again = this.again;
    this.again = false;
    if (!this.stopped && !failed && (more || again)) void this.run(undefined);
  }
}

function toHead(item: Item): Head {
  return {
    latest: Number(item[A.latest]?.N ?? 0),
    floor: Number(item[A.floor]?.N ?? 0),
  };
}

function toEntry(channel: string, item: Item): Entry {
  const position = Number(item[A.pos]?.N);
  if (item[A.tombstone]?.BOOL === true) return { position };
  const encoded = item[A.data]?.S;
  const message: ChannelMessage = {
    channel,
    position,
    data: encoded === undefined ? undefined : JSON.parse(encoded),
    time: Number(item[A.time]?.N),
  };
  const trace = item[A.trace]?.S;
  if (trace !== undefined) message.trace = JSON.parse(trace) as Record<string, string>;
  return { position, message };
}

function holeKey(channel: string, position: number): string {
  return `${channel}\u0000${position}`;
}
