/** A plain HTTP Server-Sent Events reader (what a browser's EventSource does), for tests. */

export interface SseEvent {
  id?: string;
  event?: string;
  data: string;
}

export interface SseReader {
  response: Response;
  events: SseEvent[];
  /** The last `retry:` field received. */
  retry(): number | undefined;
  /** Resolves with the events once there are at least `count`. */
  waitFor(count: number, timeoutMs?: number): Promise<SseEvent[]>;
  /** Resolves when the stream ends (closed by the server, the network, or `close`). */
  ended: Promise<void>;
  close(): Promise<void>;
}

export async function openSse(
  url: string,
  headers: Record<string, string> = {},
): Promise<SseReader> {
  const controller = new AbortController();
  const response = await fetch(url, { headers, signal: controller.signal });
  const events: SseEvent[] = [];
  let retry: number | undefined;
  const ended = (async () => {
    if (!response.body) return;
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const event = parseBlock(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          if (event.retry !== undefined) retry = event.retry;
          if (event.data) events.push(event);
        }
      }
    } catch {
      // aborted, or the connection died
    }
  })();
  return {
    response,
    events,
    retry: () => retry,
    ended,
    async waitFor(count, timeoutMs = 5_000) {
      const deadline = Date.now() + timeoutMs;
      while (events.length < count) {
        if (Date.now() > deadline) throw new Error(`got ${events.length} of ${count} events`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      return events;
    },
    async close() {
      controller.abort();
      await ended;
    },
  };
}

function parseBlock(block: string): SseEvent & { retry?: number } {
  const event: SseEvent & { retry?: number } = { data: '' };
  for (const line of block.split('\n')) {
    const colon = line.indexOf(': ');
    const [field, value] = colon < 0 ? [line, ''] : [line.slice(0, colon), line.slice(colon + 2)];
    if (field === 'retry') event.retry = Number(value);
    else if (field === 'id') event.id = value;
    else if (field === 'event') event.event = value;
    else if (field === 'data') event.data = value;
  }
  return event;
}
