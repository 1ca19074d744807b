import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  classifyWriteBlock,
  DEFAULT_WRITE_BLOCK_THRESHOLDS,
} from '../../../shared/health/writeBlock.js';

const calm = { eventLoopDelayP99Ms: 2, eventLoopUtilization: 0.2 };
const MiB = 1024 * 1024;

describe('classifyWriteBlock', () => {
  it('names the cause of a backed-up connection', () => {
    expect(classifyWriteBlock({ queuedBytes: 1000 }, calm)).toBe('none');
    expect(classifyWriteBlock({ queuedBytes: 2 * MiB, retransmitsDelta: 0, lost: 0 }, calm)).toBe(
      'slow_client',
    );
    expect(classifyWriteBlock({ queuedBytes: 2 * MiB, retransmitsDelta: 4 }, calm)).toBe('network');
    expect(classifyWriteBlock({ queuedBytes: 2 * MiB, lost: 1 }, calm)).toBe('network');
    expect(
      classifyWriteBlock(
        { queuedBytes: 2 * MiB },
        { eventLoopDelayP99Ms: 250, eventLoopUtilization: 0.5 },
      ),
    ).toBe('process');
    expect(
      classifyWriteBlock(
        { queuedBytes: 2 * MiB },
        { eventLoopDelayP99Ms: 5, eventLoopUtilization: 0.97 },
      ),
    ).toBe('process');
  });

  it('counts bytes the kernel has not sent as backed up too', () => {
    expect(classifyWriteBlock({ queuedBytes: 0.5 * MiB, notSentBytes: 0.6 * MiB }, calm)).toBe(
      'slow_client',
    );
  });

  it('is never blocked below the high-water mark, whatever else holds', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: DEFAULT_WRITE_BLOCK_THRESHOLDS.highWaterBytes }),
        fc.nat(),
        fc.nat(),
        fc.double({ min: 0, max: 10_000, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (queuedBytes, retransmitsDelta, lost, delay, elu) =>
          classifyWriteBlock(
            { queuedBytes, retransmitsDelta, lost },
            { eventLoopDelayP99Ms: delay, eventLoopUtilization: elu },
          ) === 'none',
      ),
    );
  });
});
