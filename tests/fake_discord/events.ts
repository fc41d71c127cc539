/**
 * Realistic gateway payloads for the fake Discord: READY, GUILD_CREATE (optionally large: a thousand
 * members make one message hundreds of KB), and a mix of live traffic shaped like real captures (a
 * MESSAGE_CREATE is 1–1.5 KB). Realistic sizes matter: gatehouse's throughput and memory are measured
 * against these, and a toy payload would flatter both.
 *
 * Guild ids are real-looking snowflakes that map to the shard they are sent on, so routing by guild id
 * (§7) can be checked against what the fake sent.
 */

/** Discord's epoch (2015-01-01), in ms: snowflake timestamps count from it. */
const DISCORD_EPOCH = 1_420_070_400_000n;

/** The bot user the fake's READY describes. */
export const BOT_USER_ID = "1100000000000000001";
/** The role every fake member has besides @everyone. */
const MEMBER_ROLE_ID = "1200000000000000001";

/**
 * A snowflake for a guild that lands on `shard` of `count` (`(id >> 22) % count === shard`), distinct
 * for each `index`. Its timestamp part is in 2022, like a guild that has existed for a while.
 */
export function guildIdFor(shard: number, count: number, index: number): string {
  const base = 250_000_000_000n - (250_000_000_000n % BigInt(count));
  return String(((base + BigInt(index) * BigInt(count) + BigInt(shard)) << 22n) | 0x1234n);
}

let snowflakeCounter = 0n;
/** A fresh snowflake with the current time, increasing within this process. */
export function snowflake(): string {
  snowflakeCounter = (snowflakeCounter + 1n) & 0x3fffffn;
  return String(((BigInt(Date.now()) - DISCORD_EPOCH) << 22n) | (1n << 17n) | snowflakeCounter);
}

/** A user id for member `n` of a guild (stable, so events about the same member agree). */
function userIdFor(n: number): string {
  return String(900_000_000_000_000_000n + BigInt(n));
}

/** The `id` of channel `i` of a guild: derived from the guild id, so events and GUILD_CREATE agree. */
export function channelIdFor(guildId: string, i: number): string {
  return String(BigInt(guildId) + BigInt(i + 1) * 4096n);
}

function iso(ms: number): string {
  return new Date(ms).toISOString().replace("Z", "000+00:00");
}

export function readyPayload(options: {
  sessionId: string;
  resumeUrl: string;
  shard: number;
  count: number;
  guildIds: string[];
}): Record<string, unknown> {
  return {
    v: 10,
    user_settings: {},
    user: {
      verified: true,
      username: "fake-bot",
      mfa_enabled: false,
      id: BOT_USER_ID,
      global_name: null,
      flags: 0,
      email: null,
      discriminator: "0000",
      bot: true,
      avatar: null,
    },
    session_type: "normal",
    session_id: options.sessionId,
    resume_gateway_url: options.resumeUrl,
    relationships: [],
    private_channels: [],
    presences: [],
    guilds: options.guildIds.map((id) => ({ unavailable: true, id })),
    guild_join_requests: [],
    geo_ordered_rtc_regions: ["us-east", "us-central", "atlanta", "us-south", "newark"],
    auth: {},
    application: { id: BOT_USER_ID, flags: 565248 },
    shard: [options.shard, options.count],
    _trace: [
      `["gateway-prd-us-east1-b-fake",{"micros":${
        1000 + options.shard
      },"calls":["id_created",{"micros":812,"calls":[]},"session_lookup_time",{"micros":394},"session_lookup_finished",{"micros":17},"discord-sessions-prd-2-18",{"micros":1206}]}]`,
    ],
  };
}

function user(n: number): Record<string, unknown> {
  return {
    username: `member${n}`,
    public_flags: n % 7 === 0 ? 64 : 0,
    primary_guild: null,
    id: userIdFor(n),
    global_name: `Member ${n}`,
    discriminator: "0",
    collectibles: null,
    clan: null,
    avatar_decoration_data: null,
    avatar: n % 3 === 0 ? null : "a1b2c3d4e5f60718293a4b5c6d7e8f90",
  };
}

/** A guild member object (with `user`), as in GUILD_CREATE and GUILD_MEMBER_UPDATE. */
export function member(n: number): Record<string, unknown> {
  return {
    user: user(n),
    roles: n % 4 === 0 ? [MEMBER_ROLE_ID, "1200000000000000002"] : [MEMBER_ROLE_ID],
    premium_since: null,
    pending: false,
    nick: n % 5 === 0 ? `nick ${n}` : null,
    mute: false,
    joined_at: iso(1_646_370_367_890 + n * 60_000),
    flags: 0,
    deaf: false,
    communication_disabled_until: null,
    banner: null,
    avatar: null,
  };
}

function presence(guildId: string, n: number): Record<string, unknown> {
  const status = ["online", "idle", "dnd"][n % 3];
  return {
    user: { id: userIdFor(n) },
    status,
    guild_id: guildId,
    client_status: n % 2 === 0 ? { desktop: status } : { mobile: status, web: status },
    activities: n % 4 === 0
      ? [{
        type: 0,
        name: "Factorio",
        id: "ec0b28a579ecb4bd",
        created_at: 1_763_800_000_000 + n,
        timestamps: { start: 1_763_790_000_000 },
        application_id: "427520192615612416",
      }]
      : [],
  };
}

const CHANNEL_NAMES = ["general", "announcements", "help", "off-topic", "bot-commands"];

/**
 * GUILD_CREATE `d` for a guild of `members` members (at least 3; all of them listed, like a guild
 * under the 75k limit with GUILD_MEMBERS). Over 250 members the guild is `large`.
 */
export function guildCreatePayload(id: string, index: number, members: number): Record<string, unknown> {
  const category = channelIdFor(id, 0);
  const channels = Array.from({ length: 8 }, (_, i) => {
    const text = i > 0 && i < 6;
    return {
      version: 1_700_000_000_000 + i,
      id: channelIdFor(id, i),
      type: i === 0 ? 4 : text ? 0 : 2,
      name: i === 0 ? "Text Channels" : text ? CHANNEL_NAMES[i - 1] : `Voice ${i - 5}`,
      position: i,
      parent_id: i === 0 ? null : category,
      permission_overwrites: i === 2
        ? [{ type: 0, id, deny: "2048", allow: "0" }, {
          type: 0,
          id: MEMBER_ROLE_ID,
          deny: "0",
          allow: "2048",
        }]
        : [],
      flags: 0,
      ...(text
        ? {
          topic: "A place to talk about things",
          rate_limit_per_user: 0,
          nsfw: false,
          last_message_id: null,
        }
        : i > 0
        ? { bitrate: 64000, user_limit: 0, rtc_region: null }
        : {}),
    };
  });
  const count = Math.max(members, 3);
  const role = (roleId: string, name: string, position: number, permissions: string, color: number) => ({
    id: roleId,
    name,
    color,
    colors: { primary_color: color, secondary_color: null, tertiary_color: null },
    hoist: position > 0,
    icon: null,
    unicode_emoji: null,
    position,
    permissions,
    managed: false,
    mentionable: position > 0,
    flags: 0,
  });
  return {
    id,
    name: `Fake Guild ${index}`,
    icon: index % 2 === 0 ? "f2e1d0c9b8a796857463524130201f0e" : null,
    description: null,
    home_header: null,
    splash: null,
    discovery_splash: null,
    banner: null,
    owner_id: userIdFor(0),
    application_id: null,
    region: "deprecated",
    afk_channel_id: null,
    afk_timeout: 300,
    widget_enabled: false,
    verification_level: 1,
    default_message_notifications: 1,
    explicit_content_filter: 2,
    roles: [
      role(id, "@everyone", 0, "1071698660929", 0),
      role(MEMBER_ROLE_ID, "Members", 1, "0", 3447003),
      role("1200000000000000002", "Moderators", 2, "1099511627775", 15844367),
    ],
    emojis: [{
      version: 0,
      roles: [],
      require_colons: true,
      name: "party",
      managed: false,
      id: "1300000000000000042",
      available: true,
      animated: false,
    }],
    stickers: [],
    features: ["COMMUNITY", "NEWS", "WELCOME_SCREEN_ENABLED"],
    mfa_level: 0,
    system_channel_id: channelIdFor(id, 1),
    system_channel_flags: 0,
    rules_channel_id: channelIdFor(id, 2),
    public_updates_channel_id: channelIdFor(id, 2),
    safety_alerts_channel_id: null,
    vanity_url_code: null,
    premium_tier: 0,
    premium_subscription_count: 0,
    preferred_locale: "en-US",
    nsfw_level: 0,
    nsfw: false,
    premium_progress_bar_enabled: false,
    max_members: 500000,
    max_video_channel_users: 25,
    max_stage_video_channel_users: 50,
    incidents_data: null,
    joined_at: "2023-01-02T03:04:05.678000+00:00",
    large: count > 250,
    unavailable: false,
    member_count: count,
    voice_states: [],
    members: Array.from({ length: count }, (_, i) => member(i)),
    channels,
    threads: [],
    // Like a real guild: about a third of the members are online.
    presences: Array.from({ length: Math.ceil(count / 3) }, (_, i) => presence(id, i * 3)),
    stage_instances: [],
    guild_scheduled_events: [],
    soundboard_sounds: [],
    embedded_activities: [],
    activity_instances: [],
    application_command_counts: {},
    lazy: true,
  };
}

const WORDS = ("the quick brown fox jumps over the lazy dog while a gateway forwards every event without " +
  "losing a single one even when the connection drops and resumes later on").split(" ");

function sentence(seed: number): string {
  const words: string[] = [];
  const n = 10 + (seed % 16);
  for (let i = 0; i < n; i++) words.push(WORDS[(seed * 7 + i * 13) % WORDS.length]);
  return words.join(" ");
}

/** The event names of the live-traffic mix, for tests. */
export const TRAFFIC_EVENTS = [
  "MESSAGE_CREATE",
  "TYPING_START",
  "MESSAGE_REACTION_ADD",
  "MESSAGE_UPDATE",
  "PRESENCE_UPDATE",
  "GUILD_MEMBER_UPDATE",
  "INTERACTION_CREATE",
] as const;

/** `member` as MESSAGE_CREATE carries it: without `user` (that is the `author`). */
function messageMember(n: number): Record<string, unknown> {
  const { user: _user, ...rest } = member(n);
  return rest;
}

function messageCreate(guildId: string, channelId: string, seed: number, n: number): Record<string, unknown> {
  const now = Date.now();
  // At most one of a mention, an embed or an attachment, which keeps every message within 1–1.5 KB.
  const extra = seed % 5;
  const mentions = extra === 0 ? [{ ...user((n + 17) % 500), member: messageMember((n + 17) % 500) }] : [];
  const embeds = extra === 1
    ? [{
      type: "article",
      url: "https://example.com/posts/how-gateways-resume",
      title: "How gateways resume",
      description: "Sessions, sequence numbers and the replay buffer.",
      provider: { name: "Example" },
      thumbnail: {
        url: "https://example.com/thumb.png",
        proxy_url: "https://images-ext-1.discordapp.net/external/abc/https/example.com/thumb.png",
        width: 400,
        height: 225,
        flags: 0,
      },
      content_scan_version: 2,
    }]
    : [];
  const attachments = extra === 2
    ? [{
      id: snowflake(),
      filename: "screenshot.png",
      size: 48213,
      url: `https://cdn.discordapp.com/attachments/${channelId}/1300000000000000099/screenshot.png?ex=6745`,
      proxy_url: `https://media.discordapp.net/attachments/${channelId}/1300000000000000099/screenshot.png`,
      width: 1280,
      height: 720,
      content_type: "image/png",
      placeholder: "7vcJDQJ4d4iHeIiJiHeHiHiId4IHiA==",
      placeholder_version: 1,
    }]
    : [];
  const content = mentions.length > 0 ? `<@${userIdFor((n + 17) % 500)}> ${sentence(seed)}` : sentence(seed);
  return {
    type: 0,
    tts: false,
    timestamp: iso(now),
    referenced_message: null,
    pinned: false,
    nonce: String(1_300_000_000_000_000_000n + BigInt(seed)),
    mentions,
    mention_roles: [],
    mention_everyone: false,
    member: messageMember(n),
    id: snowflake(),
    flags: 0,
    embeds,
    edited_timestamp: null,
    content,
    components: [],
    channel_type: 0,
    channel_id: channelId,
    author: user(n),
    attachments,
    guild_id: guildId,
  };
}

/** One live-traffic event in guild `guildId`: its name and `d`. `seed` picks the kind and varies the content. */
export function trafficEvent(guildId: string, seed: number): { t: string; d: Record<string, unknown> } {
  const channelId = channelIdFor(guildId, 1 + (seed % 5));
  const n = seed % 500;
  const userId = userIdFor(n);
  const kind = seed % 20;
  if (kind < 9) return { t: "MESSAGE_CREATE", d: messageCreate(guildId, channelId, seed, n) };
  if (kind < 12) {
    return {
      t: "TYPING_START",
      d: {
        user_id: userId,
        timestamp: Math.floor(Date.now() / 1000),
        member: member(n),
        channel_id: channelId,
        guild_id: guildId,
      },
    };
  }
  if (kind < 14) {
    return {
      t: "MESSAGE_REACTION_ADD",
      d: {
        user_id: userId,
        type: 0,
        message_id: snowflake(),
        message_author_id: userIdFor((n + 1) % 500),
        member: member(n),
        emoji: seed % 2 === 0 ? { name: "👍", id: null } : { name: "party", id: "1300000000000000042" },
        channel_id: channelId,
        burst: false,
        guild_id: guildId,
      },
    };
  }
  if (kind < 16) {
    const message = messageCreate(guildId, channelId, seed, n);
    return {
      t: "MESSAGE_UPDATE",
      d: { ...message, content: `${message.content} (edited)`, edited_timestamp: iso(Date.now()) },
    };
  }
  if (kind < 18) return { t: "PRESENCE_UPDATE", d: presence(guildId, n) };
  if (kind === 18) return { t: "GUILD_MEMBER_UPDATE", d: { ...member(n), guild_id: guildId } };
  return {
    t: "INTERACTION_CREATE",
    d: {
      version: 1,
      type: 2,
      token: "aW50ZXJhY3Rpb246MTMwMDAwMDAwMDAwMDAwMDAwMDpmYWtlLXRva2VuLWZvci10ZXN0cw",
      member: { ...member(n), permissions: "2248473465835073" },
      locale: "en-US",
      id: snowflake(),
      guild_locale: "en-US",
      guild_id: guildId,
      guild: { locale: "en-US", id: guildId, features: ["COMMUNITY", "NEWS"] },
      entitlements: [],
      entitlement_sku_ids: [],
      data: {
        type: 1,
        name: "ping",
        id: "1300000000000000001",
        options: [{ type: 3, name: "message", value: sentence(seed).slice(0, 40) }],
      },
      context: 0,
      channel_id: channelId,
      channel: { type: 0, id: channelId, guild_id: guildId, name: CHANNEL_NAMES[seed % 5], flags: 0 },
      authorizing_integration_owners: { "0": guildId },
      attachment_size_limit: 10485760,
      application_id: BOT_USER_ID,
      app_permissions: "2248473465835073",
    },
  };
}
