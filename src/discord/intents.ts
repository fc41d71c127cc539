/**
 * Discord's gateway intents (docs/protocol.md §8): a leaf module, so configuration can check intents
 * without importing the gateway.
 */

/** Gateway intents by name (§8), including the names Spectacles and older libraries used. */
export const INTENTS: Readonly<Record<string, number>> = {
  GUILDS: 1 << 0,
  GUILD_MEMBERS: 1 << 1,
  GUILD_MODERATION: 1 << 2,
  GUILD_BANS: 1 << 2,
  GUILD_EXPRESSIONS: 1 << 3,
  GUILD_EMOJIS_AND_STICKERS: 1 << 3,
  GUILD_EMOJIS: 1 << 3,
  GUILD_INTEGRATIONS: 1 << 4,
  GUILD_WEBHOOKS: 1 << 5,
  GUILD_INVITES: 1 << 6,
  GUILD_VOICE_STATES: 1 << 7,
  GUILD_PRESENCES: 1 << 8,
  GUILD_MESSAGES: 1 << 9,
  GUILD_MESSAGE_REACTIONS: 1 << 10,
  GUILD_MESSAGE_TYPING: 1 << 11,
  DIRECT_MESSAGES: 1 << 12,
  DIRECT_MESSAGE_REACTIONS: 1 << 13,
  DIRECT_MESSAGE_TYPING: 1 << 14,
  MESSAGE_CONTENT: 1 << 15,
  GUILD_SCHEDULED_EVENTS: 1 << 16,
  AUTO_MODERATION_CONFIGURATION: 1 << 20,
  AUTO_MODERATION_EXECUTION: 1 << 21,
  GUILD_MESSAGE_POLLS: 1 << 24,
  DIRECT_MESSAGE_POLLS: 1 << 25,
};

/** GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT: must be enabled in the developer portal. */
export const PRIVILEGED_INTENTS = (1 << 1) | (1 << 8) | (1 << 15);

/** Every bit that names an intent today (53608447). */
export const ALL_INTENTS = Object.values(INTENTS).reduce((a, b) => a | b, 0);

/** Every non-privileged intent (53575421): the default when none are configured. */
export const NON_PRIVILEGED_INTENTS = ALL_INTENTS & ~PRIVILEGED_INTENTS;

/** Canonical names of the bits set in `bits` (aliases left out), for messages. */
export function intentNames(bits: number): string[] {
  const canonical = [
    "GUILDS",
    "GUILD_MEMBERS",
    "GUILD_MODERATION",
    "GUILD_EXPRESSIONS",
    "GUILD_INTEGRATIONS",
    "GUILD_WEBHOOKS",
    "GUILD_INVITES",
    "GUILD_VOICE_STATES",
    "GUILD_PRESENCES",
    "GUILD_MESSAGES",
    "GUILD_MESSAGE_REACTIONS",
    "GUILD_MESSAGE_TYPING",
    "DIRECT_MESSAGES",
    "DIRECT_MESSAGE_REACTIONS",
    "DIRECT_MESSAGE_TYPING",
    "MESSAGE_CONTENT",
    "GUILD_SCHEDULED_EVENTS",
    "AUTO_MODERATION_CONFIGURATION",
    "AUTO_MODERATION_EXECUTION",
    "GUILD_MESSAGE_POLLS",
    "DIRECT_MESSAGE_POLLS",
  ];
  return canonical.filter((name) => (bits & INTENTS[name]) !== 0);
}
