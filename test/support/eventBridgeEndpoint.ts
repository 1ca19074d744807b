/**
 * An emulator of EventBridge's PutEvents API, for tests. There is no EventBridge and no
 * LocalStack on this machine, so this small HTTP server on 127.0.0.1 speaks the part of the
 * wire protocol the bus uses, as the API reference documents it: AWS JSON 1.1
 * (`POST /`, `Content-Type: application/x-amz-json-1.1`, `X-Amz-Target: AWSEvents.PutEvents`),
 * request `{ Entries: [{ Source, DetailType, Detail, Resources, Time, EventBusName }] }`,
 * answer `{ FailedEntryCount, Entries: [{ EventId } | { ErrorCode, ErrorMessage }] }` in
 * request order, errors as `{ "__type", "message" }` with their HTTP status. The real AWS SDK
 * client talks to it over a socket.
 *
 * What it checks: the target, a SigV4 Authorization header scoped to the `events` service (the
 * signature itself is not verified), 1 to 10 entries, the total entry size counted as
 * https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-putevent-size.html says
 * (independently of the code under test), and per entry a Source, DetailType and a Detail that
 * is a JSON object. It is not EventBridge: no rules, no targets, no quotas; accepted entries
 * are recorded, together with the event EventBridge would deliver for them.
 *
 * Tests steer it: fail chosen entries with an ErrorCode, answer whole calls with an error
 * status, delay answers, or go down (stop listening, cut open connections) and come back up on
 * the same port.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export const PUT_EVENTS_TARGET = 'AWSEvents.PutEvents';
const JSON_1_1 = 'application/x-amz-json-1.1';

/** A request entry as it arrived on the wire. */
export interface WireEntry {
  Source?: string;
  DetailType?: string;
  Detail?: string;
  Resources?: string[];
  /** Epoch seconds, as AWS JSON 1.1 encodes timestamps. */
  Time?: number;
  EventBusName?: string;
  TraceHeader?: string;
}

/** The event EventBridge would deliver to a rule's target for an accepted entry. */
export interface DeliveredEvent {
  version: '0';
  id: string;
  'detail-type': string;
  source: string;
  account: string;
  time: string;
  region: string;
  resources: string[];
  detail: Record<string, unknown>;
}

export interface AcceptedEntry {
  eventId: string;
  eventBusName: string;
  wire: WireEntry;
  event: DeliveredEvent;
}

export interface CallRecord {
  status: number;
  /** Entries in the request (0 when the body was not a PutEvents request). */
  entries: number;
  /** Total entry size as EventBridge counts it. */
  bytes: number;
  /** `__type` of an error answer. */
  errorType?: string;
  /** Per-entry ErrorCodes of a 200 answer. */
  entryErrors: string[];
  signingRegion?: string;
  signingService?: string;
}

export interface EntryFailure {
  /** Which entries fail; called once per entry that is not yet failed out. */
  match: (entry: WireEntry) => boolean;
  code: string;
  message?: string;
  /** How many matching entries to fail before the rule is used up. @default 1 */
  times?: number;
}

export interface CallFailure {
  status: number;
  type: string;
  message?: string;
  /** How many calls to fail. @default 1 */
  times?: number;
}

export interface EventBridgeEndpointOptions {
  /** Total entry size limit per request. @default 262144 (256 KiB) */
  maxRequestBytes?: number;
  /** Account id put in delivered events. @default '123456789012' */
  account?: string;
}

export class EventBridgeEndpoint {
  readonly accepted: AcceptedEntry[] = [];
  readonly calls: CallRecord[] = [];
  /** Added to every answer, to stand in for a network round trip. */
  latencyMs = 0;

  private server: Server;
  private readonly sockets = new Set<Socket>();
  private entryFailures: Required<EntryFailure>[] = [];
  private callFailures: Required<CallFailure>[] = [];
  private readonly maxRequestBytes: number;
  private readonly account: string;

  private constructor(
    readonly port: number,
    server: Server,
    options: EventBridgeEndpointOptions,
  ) {
    this.server = server;
    this.maxRequestBytes = options.maxRequestBytes ?? 256 * 1024;
    this.account = options.account ?? '123456789012';
  }

  static async start(options: EventBridgeEndpointOptions = {}): Promise<EventBridgeEndpoint> {
    const server = createServer();
    await listen(server, 0);
    const { port } = server.address() as AddressInfo;
    const endpoint = new EventBridgeEndpoint(port, server, options);
    endpoint.attach(server);
    return endpoint;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get isUp(): boolean {
    return this.server.listening;
  }

  /** The delivered events, in the order EventBridge accepted them. */
  events(): DeliveredEvent[] {
    return this.accepted.map((entry) => entry.event);
  }

  failEntries(failure: EntryFailure): void {
    this.entryFailures.push({ message: `${failure.code} (emulated)`, times: 1, ...failure });
  }

  failCalls(failure: CallFailure): void {
    this.callFailures.push({ message: `${failure.type} (emulated)`, times: 1, ...failure });
  }

  /** Stops listening and cuts every open connection: the endpoint is unreachable. */
  async down(): Promise<void> {
    if (!this.server.listening) return;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  /** Listens again on the same port. */
  async up(): Promise<void> {
    if (this.server.listening) return;
    const server = createServer();
    this.attach(server);
    await listen(server, this.port);
    this.server = server;
  }

  async stop(): Promise<void> {
    await this.down();
  }

  private attach(server: Server): void {
    server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    server.on('request', (request, response) => void this.handle(request, response));
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const body = await readBody(request);
    if (this.latencyMs > 0) await new Promise((resolve) => setTimeout(resolve, this.latencyMs));
    const record: CallRecord = { status: 200, entries: 0, bytes: 0, entryErrors: [] };
    this.calls.push(record);
    const answer = (status: number, payload: unknown, errorType?: string) => {
      record.status = status;
      if (errorType !== undefined) record.errorType = errorType;
      const text = JSON.stringify(payload);
      response.writeHead(status, {
        'content-type': JSON_1_1,
        'content-length': Buffer.byteLength(text),
        'x-amzn-requestid': randomUUID(),
      });
      response.end(text);
    };
    const fail = (status: number, type: string, message: string) =>
      answer(status, { __type: type, message }, type);

    const scope = credentialScope(request.headers.authorization);
    if (scope === undefined) {
      return fail(403, 'MissingAuthenticationTokenException', 'Missing Authentication Token');
    }
    record.signingRegion = scope.region;
    record.signingService = scope.service;
    if (scope.service !== 'events') {
      return fail(403, 'InvalidSignatureException', `Credential should be scoped to 'events'`);
    }
    if (request.method !== 'POST' || request.headers['x-amz-target'] !== PUT_EVENTS_TARGET) {
      return fail(400, 'UnknownOperationException', `${request.headers['x-amz-target']}`);
    }
    if (!String(request.headers['content-type']).startsWith(JSON_1_1)) {
      return fail(400, 'SerializationException', `expected ${JSON_1_1}`);
    }
    let input: { Entries?: unknown };
    try {
      input = JSON.parse(body) as { Entries?: unknown };
    } catch {
      return fail(
        400,
        'SerializationException',
        'Start of structure or map found where not expected',
      );
    }
    const entries = input.Entries;
    if (!Array.isArray(entries) || entries.length < 1 || entries.length > 10) {
      return fail(
        400,
        'ValidationException',
        `1 validation error detected: Value at 'entries' failed to satisfy constraint: ` +
          'Member must have length less than or equal to 10 and greater than or equal to 1',
      );
    }
    const wireEntries = entries as WireEntry[];
    record.entries = wireEntries.length;
    record.bytes = wireEntries.reduce((total, entry) => total + documentedEntrySize(entry), 0);
    if (record.bytes > this.maxRequestBytes) {
      return fail(
        400,
        'ValidationException',
        'Total size of the entries in the request is over the limit.',
      );
    }

    const callFailure = this.callFailures[0];
    if (callFailure !== undefined) {
      if (--callFailure.times <= 0) this.callFailures.shift();
      return fail(callFailure.status, callFailure.type, callFailure.message);
    }

    const results = wireEntries.map((entry) => this.accept(entry, scope.region));
    record.entryErrors = results.flatMap((result) =>
      'ErrorCode' in result ? [result.ErrorCode] : [],
    );
    answer(200, { FailedEntryCount: record.entryErrors.length, Entries: results });
  }

  private accept(
    entry: WireEntry,
    region: string,
  ): { EventId: string } | { ErrorCode: string; ErrorMessage: string } {
    for (const field of ['Source', 'DetailType', 'Detail'] as const) {
      if (typeof entry[field] !== 'string' || entry[field] === '') {
        return {
          ErrorCode: 'InvalidArgument',
          ErrorMessage: `Parameter ${field} is not valid. Reason: ${field} is a required argument.`,
        };
      }
    }
    let detail: unknown;
    try {
      detail = JSON.parse(entry.Detail!);
    } catch {
      detail = undefined;
    }
    if (typeof detail !== 'object' || detail === null || Array.isArray(detail)) {
      return { ErrorCode: 'MalformedDetail', ErrorMessage: 'Detail is malformed.' };
    }
    const failure = this.entryFailures.find((rule) => rule.match(entry));
    if (failure !== undefined) {
      if (--failure.times <= 0) this.entryFailures.splice(this.entryFailures.indexOf(failure), 1);
      return { ErrorCode: failure.code, ErrorMessage: failure.message };
    }
    const eventId = randomUUID();
    const time = entry.Time === undefined ? new Date() : new Date(entry.Time * 1000);
    this.accepted.push({
      eventId,
      eventBusName: entry.EventBusName ?? 'default',
      wire: entry,
      event: {
        version: '0',
        id: eventId,
        'detail-type': entry.DetailType!,
        source: entry.Source!,
        account: this.account,
        // EventBridge keeps whole seconds.
        time: time.toISOString().replace(/\.\d{3}Z$/, 'Z'),
        region,
        resources: entry.Resources ?? [],
        detail: detail as Record<string, unknown>,
      },
    });
    return { EventId: eventId };
  }
}

/** The user guide's getSize, written out again so the emulator checks the bus independently. */
function documentedEntrySize(entry: WireEntry): number {
  const utf8 = (text: string | undefined) => (text === undefined ? 0 : Buffer.byteLength(text));
  let size = entry.Time === undefined ? 0 : 14;
  size += utf8(entry.Source) + utf8(entry.DetailType) + utf8(entry.Detail);
  for (const resource of entry.Resources ?? []) size += utf8(resource);
  return size;
}

/** Region and service of `AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/SERVICE/aws4_request, ...`. */
function credentialScope(
  authorization: string | undefined,
): { region: string; service: string } | undefined {
  const match = /^AWS4-HMAC-SHA256 Credential=[^/]+\/\d{8}\/([^/]+)\/([^/]+)\/aws4_request,/.exec(
    authorization ?? '',
  );
  return match === null ? undefined : { region: match[1]!, service: match[2]! };
}

function readBody(request: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    request.on('error', reject);
  });
}

function listen(server: Server, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
}
