/**
 * Where everything lives in etcd's flat key space (docs/etcd.md, "Key layout"). All keys sit
 * under one prefix so several deployments can share a cluster.
 *
 *   <prefix>rec/<key>                         record: {"w": writer nonce, "v": value}
 *   <prefix>head/<channel>                    latest position of a channel (decimal)
 *   <prefix>msg/<channel>/<position:16>       message: {"t": time, "b": batch nonce, "d": data, "tr": trace}
 *   <prefix>bus/<producer>/<sequence:16>      bus event (EventBridge envelope JSON)
 *
 * Channel names are percent-encoded so a `/` in a name cannot reach into another channel's
 * range; positions are zero-padded so key order is position order.
 */
const POSITION_DIGITS = 16;

export class KeyLayout {
  readonly records: string;
  readonly heads: string;
  readonly messages: string;
  readonly bus: string;

  constructor(prefix: string) {
    const base = prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
    this.records = `${base}rec/`;
    this.heads = `${base}head/`;
    this.messages = `${base}msg/`;
    this.bus = `${base}bus/`;
  }

  record(key: string): string {
    return this.records + key;
  }

  head(channel: string): string {
    return this.heads + encodeURIComponent(channel);
  }

  channelOfHead(key: string): string {
    return decodeURIComponent(key.slice(this.heads.length));
  }

  /** Prefix of one channel's messages. */
  channel(channel: string): string {
    return `${this.messages}${encodeURIComponent(channel)}/`;
  }

  message(channel: string, position: number): string {
    return this.channel(channel) + pad(position);
  }

  busEvent(producer: string, sequence: number): string {
    return `${this.bus}${producer}/${pad(sequence)}`;
  }
}

/** The number at the end of a message or bus key. */
export function trailingNumber(key: string): number {
  return Number(key.slice(key.lastIndexOf('/') + 1));
}

export function pad(n: number): string {
  return String(n).padStart(POSITION_DIGITS, '0');
}

/** The smallest key greater than every key starting with `prefix` (etcd's range_end). */
export function prefixEnd(prefix: string | Buffer): Buffer {
  const bytes = Buffer.from(prefix);
  for (let i = bytes.length - 1; i >= 0; i--) {
    const byte = bytes[i] as number;
    if (byte < 0xff) {
      const end = bytes.subarray(0, i + 1);
      end[i] = byte + 1;
      return end;
    }
  }
  // Only 0xff bytes: everything from the prefix on.
  return Buffer.from([0]);
}
