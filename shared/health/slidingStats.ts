/**
 * Mean and standard deviation over the last `window` samples of many independent series (one
 * row each, e.g. one per connection), updated in O(1) per sample.
 *
 * The rows live in a few typed arrays rather than one object per series: a gateway keeps one
 * row per connection, and at 100,000 connections objects with their own small typed arrays
 * cost several times the numbers they hold.
 *
 * Welford's update, adapted to a window (add the new sample, remove the one it replaces),
 * keeps the variance accurate when the mean is large next to the spread (heartbeat intervals
 * of 1000 ± 2 ms), where the sum-of-squares shortcut loses digits. Rounding still drifts a
 * little with every replacement, so once per full turn of the ring the sums are recomputed
 * from the samples: O(window) every `window` samples, O(1) amortised. Samples are stored as
 * 32-bit floats (7 significant digits: sub-microsecond for millisecond figures up to an hour)
 * and rounded to that before they enter the sums, so the sums and the stored ring agree.
 */
export class SlidingStatsTable {
  private rows = 0;
  private samples = new Float32Array(0);
  private runningMean = new Float64Array(0);
  /** Sum of squared differences from the mean (Welford's M2), per row. */
  private m2 = new Float64Array(0);
  private next = new Uint16Array(0);
  private size = new Uint16Array(0);
  private replacements = new Uint16Array(0);

  constructor(readonly window: number) {
    if (!Number.isInteger(window) || window < 1 || window > 0xffff) {
      throw new RangeError(`window must be an integer in 1..65535, got ${window}`);
    }
  }

  /** Makes rows 0..rows-1 usable (new rows are empty); capacity grows by doubling. */
  ensureRows(rows: number): void {
    if (rows <= this.rows) return;
    const capacity = Math.max(rows, this.rows * 2, 16);
    const grow = <T extends Float32Array | Float64Array | Uint16Array>(
      old: T,
      make: (n: number) => T,
      per = 1,
    ): T => {
      const grown = make(capacity * per);
      grown.set(old);
      return grown;
    };
    this.samples = grow(this.samples, (n) => new Float32Array(n), this.window);
    this.runningMean = grow(this.runningMean, (n) => new Float64Array(n));
    this.m2 = grow(this.m2, (n) => new Float64Array(n));
    this.next = grow(this.next, (n) => new Uint16Array(n));
    this.size = grow(this.size, (n) => new Uint16Array(n));
    this.replacements = grow(this.replacements, (n) => new Uint16Array(n));
    this.rows = capacity;
  }

  count(row: number): number {
    return this.size[row]!;
  }

  /** Mean of the row's samples; 0 when empty. */
  mean(row: number): number {
    return this.runningMean[row]!;
  }

  /** Population variance of the row's samples; 0 with fewer than two. */
  variance(row: number): number {
    const size = this.size[row]!;
    return size < 2 ? 0 : Math.max(0, this.m2[row]! / size);
  }

  stdDev(row: number): number {
    return Math.sqrt(this.variance(row));
  }

  /** Adds a sample to the row, evicting its oldest once the window is full. Non-finite samples are refused. */
  push(row: number, value: number): void {
    if (!Number.isFinite(value)) throw new RangeError(`sample must be finite, got ${value}`);
    const sample = Math.fround(value);
    const at = row * this.window + this.next[row]!;
    const size = this.size[row]!;
    const mean = this.runningMean[row]!;
    if (size < this.window) {
      this.size[row] = size + 1;
      const delta = sample - mean;
      const updated = mean + delta / (size + 1);
      this.runningMean[row] = updated;
      this.m2[row] = this.m2[row]! + delta * (sample - updated);
    } else {
      const evicted = this.samples[at]!;
      const updated = mean + (sample - evicted) / size;
      this.runningMean[row] = updated;
      this.m2[row] = this.m2[row]! + (sample - evicted) * (sample - updated + evicted - mean);
      this.replacements[row] = this.replacements[row]! + 1;
    }
    this.samples[at] = sample;
    this.next[row] = (this.next[row]! + 1) % this.window;
    if (this.replacements[row]! >= this.window) this.recompute(row);
  }

  clear(row: number): void {
    this.next[row] = 0;
    this.size[row] = 0;
    this.runningMean[row] = 0;
    this.m2[row] = 0;
    this.replacements[row] = 0;
  }

  private recompute(row: number): void {
    const size = this.size[row]!;
    const base = row * this.window;
    let sum = 0;
    for (let i = 0; i < size; i++) sum += this.samples[base + i]!;
    const mean = sum / size;
    let m2 = 0;
    for (let i = 0; i < size; i++) m2 += (this.samples[base + i]! - mean) ** 2;
    this.runningMean[row] = mean;
    this.m2[row] = m2;
    this.replacements[row] = 0;
  }
}
