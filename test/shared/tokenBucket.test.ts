import { describe, expect, it } from 'vitest';
import { TokenBucket } from '../../shared/tokenBucket.js';

describe('TokenBucket', () => {
  it('allows a burst, then the sustained rate', () => {
    const bucket = new TokenBucket(10, 20, 0);
    const burst = Array.from({ length: 25 }, () => bucket.take(0)).filter(Boolean).length;
    expect(burst).toBe(20);
    expect(bucket.take(50)).toBe(false); // half a token
    expect(bucket.take(100)).toBe(true);
    const oneSecond = Array.from({ length: 30 }, () => bucket.take(1100)).filter(Boolean).length;
    expect(oneSecond).toBe(10);
  });
});
