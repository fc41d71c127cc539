/**
 * The latency histogram of the bench's readers (bench/reader.ts, bench/proxy_reader.ts): 0.05 ms bins up
 * to 2 s, then 10 ms bins.
 */
const FINE_MS = 0.05, FINE_BINS = 40_000, COARSE_MS = 10, COARSE_BINS = 200_000;

export class LatencyHistogram {
  fine = new Uint32Array(FINE_BINS);
  coarse = new Uint32Array(COARSE_BINS);
  count = 0;
  max = 0;

  add(ms: number): void {
    this.count++;
    if (ms > this.max) this.max = ms;
    if (ms < 0) ms = 0;
    const f = Math.floor(ms / FINE_MS);
    if (f < FINE_BINS) this.fine[f]++;
    else this.coarse[Math.min(COARSE_BINS - 1, Math.floor(ms / COARSE_MS))]++;
  }

  /** The upper edge of the bin holding the q-quantile, in ms (null when nothing was stamped). */
  quantile(q: number): number | null {
    if (this.count === 0) return null;
    const rank = Math.ceil(q * this.count);
    let seen = 0;
    for (let i = 0; i < FINE_BINS; i++) {
      seen += this.fine[i];
      if (seen >= rank) return Math.min(this.max, (i + 1) * FINE_MS);
    }
    for (let i = 0; i < COARSE_BINS; i++) {
      seen += this.coarse[i];
      if (seen >= rank) return Math.min(this.max, (i + 1) * COARSE_MS);
    }
    return this.max;
  }
}
