import denoJson from "../deno.json" with { type: "json" };

/** The gatehouse version, from deno.json (compiled into the binary). */
export const VERSION: string = denoJson.version;
