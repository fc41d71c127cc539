/**
 * GET /gateway/bot (docs/protocol.md §1): the WebSocket URL, the recommended shard count and the
 * identify budget. Retried with capped, jittered backoff on network errors, 5xx and 429 (honouring
 * `retry_after`), because a flat retry loop against a failing API is how bots get Cloudflare-banned.
 * A 401 means the token is wrong: no retry.
 */
import { backoffDelay } from "../util/backoff.ts";
import { type Clock, sleep, systemClock } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
import type { Secret } from "../util/secret.ts";
import type { GatewayBotInfo } from "./protocol.ts";
import { VERSION } from "../version.ts";
import { isGatewayUrl } from "./gateway_url.ts";
import { explainConnectError } from "./ws_client.ts";

/** Retries of GET /gateway/bot without a Retry-After: 500 ms doubling to 30 s, half jittered. */
const INFO_RETRY = { baseMs: 500, maxMs: 30_000, jitter: 0.5 };

/** Discord refused the token (401 here, close 4004 on the gateway): exit code 3. */
export class TokenRejectedError extends Error {
  override name = "TokenRejectedError";
}

/** The API could not be reached or answered nonsense after every retry: exit code 1. */
export class GatewayInfoError extends Error {
  override name = "GatewayInfoError";
}

export interface FetchGatewayOptions {
  scheme: "http" | "https";
  host: string;
  version: number;
  token: Secret;
  logger?: Logger;
  clock?: Clock;
  random?: () => number;
  /** Attempts before giving up. */
  attempts?: number;
  /** Per-request timeout. */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

export function gatewayBotUrl(options: Pick<FetchGatewayOptions, "scheme" | "host" | "version">): string {
  return `${options.scheme}://${options.host}/api/v${options.version}/gateway/bot`;
}

export async function fetchGatewayBot(options: FetchGatewayOptions): Promise<GatewayBotInfo> {
  const clock = options.clock ?? systemClock;
  const random = options.random ?? Math.random;
  const attempts = options.attempts ?? 6;
  const doFetch = options.fetch ?? fetch;
  const url = gatewayBotUrl(options);
  let lastProblem = "";
  for (let attempt = 1; attempt <= attempts; attempt++) {
    let retryAfterMs: number | null = null;
    try {
      const response = await doFetch(url, {
        headers: {
          Authorization: `Bot ${options.token.reveal()}`,
          "User-Agent": `DiscordBot (gatehouse, ${VERSION})`,
        },
        signal: AbortSignal.timeout(options.timeoutMs ?? 15_000),
      });
      const body = await response.text();
      if (response.status === 401) {
        throw new TokenRejectedError(`Discord rejected the token (HTTP 401 from ${url})`);
      }
      if (response.ok) return parseGatewayBot(body, url);
      lastProblem = `HTTP ${response.status} from ${url}`;
      if (response.status === 429) {
        const retryAfter = Number(response.headers.get("retry-after") ?? safeJson(body)?.retry_after);
        if (Number.isFinite(retryAfter)) retryAfterMs = retryAfter * 1000;
      } else if (response.status < 500 && response.status !== 408) {
        throw new GatewayInfoError(`${lastProblem}: ${body.slice(0, 200)}`);
      }
    } catch (error) {
      if (error instanceof TokenRejectedError || error instanceof GatewayInfoError) throw error;
      // fetch says "fetch failed"; what failed is in the cause (a refused certificate, DNS, a refusal).
      const cause = (error as { cause?: unknown }).cause;
      const detail = [(error as Error).message, cause instanceof Error ? cause.message : null]
        .filter((part) => part).join(": ");
      const explained = explainConnectError(options.host, detail);
      if (explained.startsWith("the TLS certificate")) {
        throw new GatewayInfoError(`cannot reach ${url}: ${explained}`);
      }
      lastProblem = `cannot reach ${url}: ${detail}`;
    }
    if (attempt === attempts) break;
    const delay = retryAfterMs ?? backoffDelay(INFO_RETRY, attempt, random());
    options.logger?.warn("GET /gateway/bot failed ({problem}); retry {attempt} of {max} in {delay} ms", {
      problem: lastProblem,
      attempt,
      max: attempts - 1,
      delay: Math.round(delay),
    });
    await sleep(clock, delay);
  }
  throw new GatewayInfoError(`${lastProblem} (gave up after ${attempts} attempts)`);
}

function safeJson(text: string): Record<string, unknown> | null {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** Validates the shape of the answer so a wrong host fails here with a clear message. */
export function parseGatewayBot(body: string, url: string): GatewayBotInfo {
  const json = safeJson(body);
  const limit = json?.session_start_limit as Record<string, unknown> | undefined;
  const ok = json !== null && typeof json.url === "string" && isGatewayUrl(json.url) &&
    Number.isInteger(json.shards) && (json.shards as number) > 0 && limit !== undefined &&
    Number.isInteger(limit.total) && Number.isInteger(limit.remaining) &&
    typeof limit.reset_after === "number" && Number.isInteger(limit.max_concurrency) &&
    (limit.max_concurrency as number) > 0;
  if (!ok) {
    throw new GatewayInfoError(`unexpected answer from ${url}: ${body.slice(0, 200)}`);
  }
  return json as unknown as GatewayBotInfo;
}
