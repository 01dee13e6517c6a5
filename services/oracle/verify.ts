/**
 * Checks one reading message, cheapest checks first: size, JSON, schema, topic, machine, key,
 * agreement, time, meter, rate, and last the signature. Every refusal carries a reason code from the
 * protocol, so a machine knows exactly why.
 */
import type { Hex } from "viem";
import {
  MAX_PAYLOAD_BYTES,
  PROTOCOL_VERSION,
  machineIdFromTopic,
  type RejectReason,
} from "../shared/protocol.ts";
import { readingDigest, type Reading, type ReadingDomain } from "../shared/eip712.ts";
import type { DevicePublicKey, VerifyResult } from "../shared/signatures.ts";
import {
  STATUS_ACTIVE,
  TRUST_ORACLE_ATTESTED,
  type AgreementInfo,
  type ChainState,
  type MachineInfo,
} from "./chain-state.ts";

export interface LastAccepted {
  cumulativeUnits: bigint;
  timestamp: bigint;
  signature: string;
}

export interface VerifyContext {
  domain: ReadingDomain;
  chain: ChainState;
  /** Checks a device signature over a reading digest (on a worker thread, or inline). */
  checkSignature(
    digest: Uint8Array,
    signature: string,
    key: DevicePublicKey,
  ): Promise<VerifyResult>;
  /** Newest accepted reading of an agreement (journal or chain), or undefined. */
  lastAccepted(agreementId: bigint, agreement: AgreementInfo): Promise<LastAccepted | undefined>;
  futureToleranceS: bigint;
  nowS(): bigint;
}

export type Verified = {
  ok: true;
  reading: Reading;
  machine: MachineInfo;
  agreement: AgreementInfo;
  /** On-chain signature encoding; empty for oracle-attested machines. */
  signature: Hex;
  /** The signature as it came on the wire, to recognise a replay of this very message. */
  wireSignature: string;
};

export type Refused = {
  ok: false;
  reason: RejectReason;
  detail: string;
  machineId?: string;
  agreementId?: string;
  cumulativeUnits?: string;
};

const FIELDS = ["v", "agreementId", "machineId", "cumulativeUnits", "timestamp", "signature"];
const UINT96_MAX = (1n << 96n) - 1n;
const UINT256_MAX = (1n << 256n) - 1n;

function refuse(reason: RejectReason, detail: string, extra: Partial<Refused> = {}): Refused {
  return { ok: false, reason, detail, ...extra };
}

export async function verifyReadingMessage(
  topic: string,
  payload: Uint8Array,
  ctx: VerifyContext,
): Promise<Verified | Refused> {
  const topicMachine = machineIdFromTopic(topic);
  const where = { machineId: topicMachine };
  if (payload.length > MAX_PAYLOAD_BYTES) {
    return refuse(
      "payload_too_large",
      `${payload.length} bytes, at most ${MAX_PAYLOAD_BYTES}`,
      where,
    );
  }
  let message: unknown;
  try {
    message = JSON.parse(Buffer.from(payload).toString("utf8"));
  } catch {
    return refuse("malformed_json", "payload is not JSON", where);
  }
  if (typeof message !== "object" || message === null || Array.isArray(message)) {
    return refuse("schema_invalid", "payload must be a JSON object", where);
  }
  const m = message as Record<string, unknown>;
  if (m.v !== PROTOCOL_VERSION) {
    return refuse(
      "unsupported_version",
      `schema version ${JSON.stringify(m.v)}, expected ${PROTOCOL_VERSION}`,
      where,
    );
  }
  const unknownField = Object.keys(m).find((key) => !FIELDS.includes(key));
  if (unknownField !== undefined)
    return refuse("schema_invalid", `unknown field "${unknownField}"`, where);
  if (
    typeof m.agreementId !== "string" ||
    !/^[0-9]{1,78}$/.test(m.agreementId) ||
    BigInt(m.agreementId) > UINT256_MAX
  ) {
    return refuse("schema_invalid", "agreementId must be a decimal string", where);
  }
  if (typeof m.machineId !== "string" || !/^0x[0-9a-fA-F]{64}$/.test(m.machineId)) {
    return refuse("schema_invalid", "machineId must be 0x and 32 bytes of hex", where);
  }
  if (
    typeof m.cumulativeUnits !== "string" ||
    !/^[0-9]{1,30}$/.test(m.cumulativeUnits) ||
    BigInt(m.cumulativeUnits) > UINT96_MAX
  ) {
    return refuse("schema_invalid", "cumulativeUnits must be a decimal string below 2^96", where);
  }
  if (
    typeof m.timestamp !== "number" ||
    !Number.isSafeInteger(m.timestamp) ||
    m.timestamp < 0 ||
    m.timestamp > 2 ** 40
  ) {
    return refuse("schema_invalid", "timestamp must be an integer of Unix seconds", where);
  }
  if (typeof m.signature !== "string" || !/^0x([0-9a-fA-F]{2}){0,80}$/.test(m.signature)) {
    return refuse("schema_invalid", "signature must be 0x-prefixed hex of at most 80 bytes", where);
  }
  const machineId = m.machineId.toLowerCase() as Hex;
  const agreementId = BigInt(m.agreementId);
  const about = { machineId, agreementId: m.agreementId, cumulativeUnits: m.cumulativeUnits };
  if (topicMachine === undefined || topicMachine !== machineId) {
    return refuse("topic_mismatch", "machineId differs from the topic's", about);
  }
  const reading: Reading = {
    agreementId,
    machineId,
    cumulativeUnits: BigInt(m.cumulativeUnits),
    timestamp: BigInt(m.timestamp),
  };

  const machine = await ctx.chain.machine(machineId);
  if (machine === undefined) return refuse("unknown_machine", "no such machine on-chain", about);
  const attested = machine.trustMode === TRUST_ORACLE_ATTESTED;
  if (!attested && machine.key === undefined) {
    return refuse("key_revoked", "the machine's device key is revoked", about);
  }
  const agreement = await ctx.chain.agreement(agreementId);
  if (agreement === undefined)
    return refuse("unknown_agreement", "no such agreement on-chain", about);
  if (agreement.machineId !== machineId) {
    return refuse("agreement_machine_mismatch", "the agreement belongs to another machine", about);
  }
  const now = ctx.nowS();
  if (agreement.status !== STATUS_ACTIVE)
    return refuse("agreement_inactive", "the agreement is suspended or closed", about);
  if (reading.timestamp > now + ctx.futureToleranceS) {
    return refuse("future_timestamp", `timestamp ${reading.timestamp} is ahead of ${now}`, about);
  }
  if (reading.timestamp < agreement.startTime) {
    return refuse("before_agreement_start", "timestamp precedes the agreement's start", about);
  }
  if (reading.timestamp > agreement.endTime || now > agreement.closesAt) {
    return refuse("agreement_inactive", "the agreement has ended", about);
  }

  // Against the newest reading accepted so far: an old or replayed message is refused before its
  // signature costs anything. The oracle checks again when it claims the meter, in arrival order.
  const meter = checkMeter(
    reading,
    m.signature,
    await ctx.lastAccepted(agreementId, agreement),
    machine,
    agreement,
  );
  if (meter !== undefined) return meter;

  const wireSignature = m.signature;
  if (attested) return { ok: true, reading, machine, agreement, signature: "0x", wireSignature };
  const checked = await ctx.checkSignature(
    readingDigest(ctx.domain, reading),
    m.signature,
    machine.key!,
  );
  if (!checked.ok) return refuse(checked.reason, checked.detail, about);
  return { ok: true, reading, machine, agreement, signature: checked.signature, wireSignature };
}

/**
 * The meter's checks against the newest accepted reading (`last`): above it (else stale, or replay
 * when it is that very message again), and not faster than the machine's declared maximum rate.
 */
export function checkMeter(
  reading: Reading,
  wireSignature: string,
  last: LastAccepted | undefined,
  machine: MachineInfo,
  agreement: AgreementInfo,
): Refused | undefined {
  const about = {
    machineId: reading.machineId,
    agreementId: reading.agreementId.toString(),
    cumulativeUnits: reading.cumulativeUnits.toString(),
  };
  if (last !== undefined && reading.cumulativeUnits <= last.cumulativeUnits) {
    const replay =
      reading.cumulativeUnits === last.cumulativeUnits &&
      wireSignature.toLowerCase() === last.signature.toLowerCase();
    return refuse(
      replay ? "replay" : "stale_reading",
      `meter ${reading.cumulativeUnits} is not above ${last.cumulativeUnits}`,
      about,
    );
  }
  if (machine.maxUnitsPerHour > 0n) {
    const fromUnits = last?.cumulativeUnits ?? agreement.cumulativeUnits;
    const fromTime =
      last?.timestamp ??
      (agreement.lastReadingAt > 0n ? agreement.lastReadingAt : agreement.startTime);
    const elapsed = reading.timestamp > fromTime ? reading.timestamp - fromTime : 0n;
    // Allow one second of slack so that two readings in the same second are not refused.
    if ((reading.cumulativeUnits - fromUnits) * 3600n > machine.maxUnitsPerHour * (elapsed + 1n)) {
      return refuse(
        "rate_exceeded",
        `meter rose faster than ${machine.maxUnitsPerHour} units per hour`,
        about,
      );
    }
  }
  return undefined;
}
