/**
 * Mean and standard deviation over the last `capacity` samples, updated in O(1) per sample.
 *
 * Welford's update, adapted to a window (add the new sample, remove the one it replaces),
 * keeps the variance accurate when the mean is large next to the spread (heartbeat intervals
 * of 1000 ± 2 ms), where the sum-of-squares shortcut loses digits. Rounding still drifts a
 * little with every replacement, so once per full turn of the ring the sums are recomputed
 * from the samples: O(capacity) every `capacity` samples, O(1) amortised.
 */
export class SlidingStats {
  private readonly samples: Float64Array;
  private next = 0;
  private size = 0;
  private runningMean = 0;
  /** Sum of squared differences from the mean (Welford's M2). */
  private m2 = 0;
  private replacementsSinceRecompute = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`capacity must be an integer >= 1, got ${capacity}`);
    }
    this.samples = new Float64Array(capacity);
  }

  get count(): number {
    return this.size;
  }

  /** Mean of the samples in the window; 0 when empty. */
  get mean(): number {
    return this.runningMean;
  }

  /** Population variance of the samples in the window; 0 with fewer than two samples. */
  get variance(): number {
    return this.size < 2 ? 0 : Math.max(0, this.m2 / this.size);
  }

  get stdDev(): number {
    return Math.sqrt(this.variance);
  }

  /** Adds a sample, evicting the oldest once the window is full. Non-finite samples are refused. */
  push(sample: number): void {
    if (!Number.isFinite(sample)) throw new RangeError(`sample must be finite, got ${sample}`);
    if (this.size < this.capacity) {
      this.size += 1;
      const delta = sample - this.runningMean;
      this.runningMean += delta / this.size;
      this.m2 += delta * (sample - this.runningMean);
    } else {
      const evicted = this.samples[this.next] ?? 0;
      const previousMean = this.runningMean;
      this.runningMean += (sample - evicted) / this.size;
      this.m2 += (sample - evicted) * (sample - this.runningMean + evicted - previousMean);
      this.replacementsSinceRecompute += 1;
    }
    this.samples[this.next] = sample;
    this.next = (this.next + 1) % this.capacity;
    if (this.replacementsSinceRecompute >= this.capacity) this.recompute();
  }

  clear(): void {
    this.next = 0;
    this.size = 0;
    this.runningMean = 0;
    this.m2 = 0;
    this.replacementsSinceRecompute = 0;
  }

  private recompute(): void {
    let sum = 0;
    for (let i = 0; i < this.size; i++) sum += this.samples[i] ?? 0;
    const mean = sum / this.size;
    let m2 = 0;
    for (let i = 0; i < this.size; i++) m2 += ((this.samples[i] ?? 0) - mean) ** 2;
    this.runningMean = mean;
    this.m2 = m2;
    this.replacementsSinceRecompute = 0;
  }
}
