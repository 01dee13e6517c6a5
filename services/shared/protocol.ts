/**
 * The machine-to-oracle protocol, version 1: MQTT topics, the JSON payloads on them and the
 * reason codes the oracle answers with. Devices, the oracle, the simulator and the API all
 * import it from here so that there is exactly one definition.
 *
 * The README's "Protocol for machine makers" section documents the same facts for
 * third-party firmware.
 */

/** Version of the payload schema; a message with another `v` is refused. */
export const PROTOCOL_VERSION = 1;

/** Largest accepted payload, in bytes of UTF-8 JSON. Larger messages are refused unread. */
export const MAX_PAYLOAD_BYTES = 1024;

/** Topic prefix shared by every topic of this protocol version. */
export const TOPIC_PREFIX = "ppu/v1";

/** Machine → oracle: signed cumulative readings, QoS 1. */
export function readingsTopic(machineId: string): string {
  return `${TOPIC_PREFIX}/${machineId.toLowerCase()}/readings`;
}

/** Oracle → machine: the newest status for the machine, QoS 1, retained. */
export function statusTopic(machineId: string): string {
  return `${TOPIC_PREFIX}/${machineId.toLowerCase()}/status`;
}

/** Wildcard for every machine's readings. */
export const READINGS_WILDCARD = `${TOPIC_PREFIX}/+/readings`;

/** MQTT 5 shared subscription through which oracle instances split the load. */
export function sharedReadingsSubscription(group = "ppu-oracle"): string {
  return `$share/${group}/${READINGS_WILDCARD}`;
}

/** Extracts the machine id from a readings topic, or undefined when the topic is not one. */
export function machineIdFromTopic(topic: string): string | undefined {
  const match = /^ppu\/v1\/(0x[0-9a-fA-F]{64})\/readings$/.exec(topic);
  return match?.[1]?.toLowerCase();
}

/**
 * A reading message as it travels on `ppu/v1/<machineId>/readings`.
 *
 * - `agreementId` and `cumulativeUnits` are decimal strings (they are uint256 on-chain and do
 *   not fit a JSON number).
 * - `machineId` is 0x-prefixed, 32 bytes, lower or upper case hex; it must equal the topic's.
 * - `timestamp` is the machine's clock when it read the meter, in Unix seconds.
 * - `signature` is 0x-prefixed hex: for secp256k1 keys 65 bytes r‖s‖v (v 27/28 or 0/1),
 *   64 bytes EIP-2098 compact, or ASN.1 DER; for P-256 keys 64 bytes r‖s or ASN.1 DER.
 *   `s` must be in the lower half of the curve order.
 */
export interface ReadingMessage {
  v: typeof PROTOCOL_VERSION;
  agreementId: string;
  machineId: string;
  cumulativeUnits: string;
  timestamp: number;
  signature: string;
}

/** Why the oracle refused a reading. Stable strings: firmware may switch on them. */
export const REJECT_REASONS = [
  "payload_too_large",
  "malformed_json",
  "unsupported_version",
  "schema_invalid",
  "topic_mismatch",
  "unknown_machine",
  "unknown_agreement",
  "agreement_machine_mismatch",
  "agreement_inactive",
  "wrong_trust_mode",
  "key_revoked",
  "bad_signature",
  "malleable_signature",
  "stale_reading",
  "replay",
  "rate_exceeded",
  "future_timestamp",
  "before_agreement_start",
  "internal_error",
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

/** What the status topic can say. */
export const STATUS_STATES = [
  "accepted",
  "rejected",
  "settled",
  "low_balance",
  "exhausted",
  "cap_reached",
  "suspended",
  "ended",
] as const;
export type StatusState = (typeof STATUS_STATES)[number];

/**
 * The retained message on `ppu/v1/<machineId>/status`. `cumulativeUnits` is the reading the
 * status refers to: a machine may forget a buffered reading once a `settled` status names a
 * `cumulativeUnits` at or above it.
 */
export interface StatusMessage {
  v: typeof PROTOCOL_VERSION;
  machineId: string;
  agreementId: string;
  state: StatusState;
  cumulativeUnits?: string;
  reason?: RejectReason;
  detail?: string;
  txHash?: string;
  escrow?: string;
  at: number;
}

/** States after which a machine must stop serving the agreement. */
export const STOP_STATES: ReadonlySet<StatusState> = new Set([
  "exhausted",
  "suspended",
  "ended",
  "cap_reached",
]);
