/**
 * The reader's side of `deno task bench`, seen from the bench: a `Reader` starts bench/reader.ts on the
 * read end of a pipe and collects its reports (progress every 100 ms, a mark on request, the end), so a
 * scenario can take the lines that reached it between two marks.
 */
const ROOT = new URL("../", import.meta.url);

export interface ReaderReport {
  type: "progress" | "mark" | "end";
  at: number;
  lines: number;
  shards?: number[];
  stamped?: number;
  firstReadAt?: number | null;
  lastReadAt?: number | null;
  cpuS?: number;
  window?: { lines: number; stamped: number; p50: number | null; p99: number | null; max: number | null };
}

/** The reader process (bench/reader.ts) on the read end of a FIFO, and its reports. */
export class Reader {
  readonly child: Deno.ChildProcess;
  /** (at, lines, lines per shard) every 100 ms, in order. */
  readonly progress: Array<{ at: number; lines: number; shards: number[] }> = [];
  #marks: ReaderReport[] = [];
  #waiters: Array<(r: ReaderReport) => void> = [];
  readonly done: Promise<ReaderReport>;
  #resolveDone!: (r: ReaderReport) => void;

  /** `input`: a shell redirection for the reader's stdin, e.g. `< "$BENCH_FIFO"`. */
  constructor(input: string, env: Record<string, string>) {
    this.child = new Deno.Command("sh", {
      args: ["-c", `exec "$0" run --allow-all bench/reader.ts ${input}`, Deno.execPath()],
      cwd: ROOT,
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.done = new Promise((resolve) => this.#resolveDone = resolve);
    void this.#read();
  }

  get lines(): number {
    return this.progress.at(-1)?.lines ?? 0;
  }

  /** Lines of `shard` read by `at` (the last progress report at or before it). */
  shardLinesAt(at: number, shard: number): number {
    let lo = 0, hi = this.progress.length - 1, found = 0;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.progress[mid].at <= at) {
        found = this.progress[mid].shards[shard] ?? 0;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  }

  async #read(): Promise<void> {
    let carry = "";
    for await (const text of this.child.stdout.pipeThrough(new TextDecoderStream())) {
      carry += text;
      let nl;
      while ((nl = carry.indexOf("\n")) >= 0) {
        const report = JSON.parse(carry.slice(0, nl)) as ReaderReport;
        carry = carry.slice(nl + 1);
        this.progress.push({
          at: report.at,
          lines: report.lines,
          shards: report.shards ?? this.progress.at(-1)?.shards ?? [],
        });
        if (report.type === "mark") {
          const waiter = this.#waiters.shift();
          if (waiter) waiter(report);
          else this.#marks.push(report);
        } else if (report.type === "end") this.#resolveDone(report);
      }
    }
  }

  /**
   * Asks for a mark (the edge of a measured window) and waits for it; once the reader has ended (the
   * program under test closed its stdout), its last report stands for the mark.
   */
  mark(): Promise<ReaderReport> {
    const report = new Promise<ReaderReport>((resolve) => {
      const queued = this.#marks.shift();
      if (queued) resolve(queued);
      else this.#waiters.push(resolve);
    });
    try {
      Deno.kill(this.child.pid, "SIGUSR2");
    } catch {
      // the reader is gone: its end report answers
    }
    return Promise.race([report, this.done]);
  }
}
